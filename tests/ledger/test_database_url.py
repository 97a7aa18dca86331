"""The ledger's database URL: a bare postgresql:// works, and a wrong URL, a driver it does not run on or a
server that does not answer is one line naming the setting and what was expected — never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flows.ledger import Ledger, LedgerUnavailable
from tests.conftest import TestDatabase
from tests.support import free_port

REFUSED = f"postgresql://sop:s3cret@127.0.0.1:{free_port()}/sop"  # nothing listens there
CASES = {
    "not a URL": ("ledger.db", "'ledger.db' is not a database URL; expected sqlite:///"),
    "another database": ("mysql://sop@db/sop", "mysql://sop@db/sop is not a database the ledger runs on"),
    "Prefect's async driver": ("postgresql+asyncpg://sop@db/sop", "driver 'asyncpg' in postgresql+asyncpg://sop@db/sop"),
    "a server that does not answer": (REFUSED, "cannot open the ledger at postgresql+psycopg://sop:***@127.0.0.1:"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", [("audit", "verify"), ("run", "traffic-surge", "-p", "service=web")])
def test_a_ledger_it_cannot_open_is_one_line_naming_the_setting(sop: Any, case: str, command: tuple[str, ...]) -> None:
    url, expected = CASES[case]
    done = sop(*command, env={"SOP_DATABASE_URL": url, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: SOP_DATABASE_URL (or database_url in config/settings.yaml): ") and expected in line


def test_the_api_process_stops_with_one_line_when_its_ledger_cannot_be_opened(repo_root: Path) -> None:
    env = {**os.environ, "SOP_HOME": str(repo_root), "SOP_DATABASE_URL": REFUSED, "SOP_API_LAUNCH": "0"}
    done = subprocess.run([sys.executable, "-m", "uvicorn", "--factory", "flows.runtime.web:from_environment",
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: SOP_DATABASE_URL (or database_url in config/settings.yaml): cannot open the ledger" in done.stderr


@pytest.mark.postgresql_only("a bare postgresql:// URL on the session's cluster")
def test_a_bare_postgresql_url_opens_the_ledger_with_psycopg_3(database: TestDatabase, database_url: str,
                                                               sop: Any) -> None:
    bare = database_url.replace("postgresql+psycopg://", "postgresql://")
    ledger = Ledger(bare)
    assert ledger.url == database_url
    ledger.migrate()
    ledger.dispose()
    done = sop("audit", "verify", "--json", env={"SOP_DATABASE_URL": bare})
    assert done.returncode == 0, done.stderr


def test_the_error_is_our_type_for_the_code_that_opens_a_ledger() -> None:
    with pytest.raises(LedgerUnavailable, match="SOP_DATABASE_URL"):
        Ledger("oracle://x/y")


def test_a_postgresql_url_without_psycopg_installed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as in an install without the 'postgres' extra
    with pytest.raises(LedgerUnavailable) as refused:
        Ledger("postgresql://sop:s3cret@db.example:5432/sop")
    message = str(refused.value)
    assert message.startswith("SOP_DATABASE_URL (or database_url in config/settings.yaml): ")
    assert "needs psycopg 3, which is not installed" in message and "pip install 'sops-as-code[postgres]'" in message
    assert "s3cret" not in message
