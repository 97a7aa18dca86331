"""The Prefect auth string's file (no server): one others may read is refused, with the fix, never a traceback."""

from __future__ import annotations

import pytest

from tests.conftest import TestDatabase
from tests.engine.conftest import make_project
from tests.support import free_port


@pytest.fixture
def site(database: TestDatabase, repo_root, tmp_path, monkeypatch):
    root = make_project(repo_root, tmp_path / "site", only=("t-parallel",))
    (root / "var").mkdir()
    (root / "var" / "prefect-auth").write_text("readable-by-all\n")
    (root / "var" / "prefect-auth").chmod(0o644)
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOP_DATABASE_URL", database.url_at(root / "var" / "ledger.db"))
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    return root


def test_sop_serve_refuses_an_auth_file_others_may_read(site):
    from flows.runtime.serve import Stack, StackError

    stack = Stack(root=site, port=free_port(), workers=1, api=False, pager=False, timers=False)
    with pytest.raises(StackError, match=r"prefect-auth has permissions -rw-r--r--.*chmod 600"):
        stack.start()
    assert stack.children == []  # nothing was started with it


def test_sop_run_says_how_to_fix_the_auth_file(database: TestDatabase, sop, site):
    result = sop("run", "t-parallel", "--as", "li-wei",
                 env={"SOP_HOME": str(site), "PREFECT_API_URL": "http://127.0.0.1:9/api",
                      "SOP_DATABASE_URL": database.url_at(site / "var" / "ledger.db"),
                      "SOP_INBOX_DIR": str(site / "var" / "inbox")})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "chmod 600" in result.stderr and "prefect-auth" in result.stderr
