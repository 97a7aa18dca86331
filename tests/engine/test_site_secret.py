"""The site's secret read by an account that may not: one clear refusal saying what to do, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

from flows.engine.secrets import SecretUnsafe, site_secret


def _as_nobody(root: Path) -> str:
    """``site_secret(root)`` in a child process as an account that is not the file's owner; what it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody (root reads every file), or stay ourselves (the file is 000 then)
        os.close(read)
        answer = "no error"
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            site_secret(root, env={})
        except SecretUnsafe as exc:
            answer = f"SecretUnsafe: {exc}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer = f"{type(exc).__name__}: {exc}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    return said


def test_an_account_that_may_not_read_the_secret_is_told_what_to_do(tmp_path: Path) -> None:
    site_secret(tmp_path, env={})  # made once, 0600, ours
    secret = tmp_path / "var" / "secret"
    if os.geteuid() != 0:
        secret.chmod(0)
    said = _as_nobody(tmp_path)
    assert said.startswith("SecretUnsafe: cannot read the site's secret "), said  # was PermissionError's traceback
    assert "run this as that account, or give this process the same secret in $SOP_SECRET" in said
    assert site_secret(tmp_path, env={"SOP_SECRET": "given"}) == b"given"


def test_sop_status_reads_no_secret(sop, repo_root: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """A person's terminal on a team's host may not read var/secret: commands that send no page never do."""
    from tests.engine.conftest import make_project

    root = make_project(repo_root, tmp_path / "site", only=("t-ladder",))
    (root / "var").mkdir(exist_ok=True)
    secret = root / "var" / "secret"
    secret.write_text("the-service-accounts-own\n")
    secret.chmod(0o644)  # refused as a secret: reading it would stop the command
    env = {"SOP_HOME": str(root), "SOP_DATABASE_URL": f"sqlite:///{root / 'var' / 'ledger.db'}",
           "SOP_INBOX_DIR": str(root / "var" / "inbox"), "SOP_SECRET": None}
    done = sop("status", env=env)
    assert done.returncode == 0, done.stderr  # it read the secret at start, to make links it never made
    assert "no open runs" in done.stdout


def test_pages_go_without_their_link_when_the_secret_cannot_be_read_and_a_service_stops(repo_root: Path,
                                                                                         tmp_path: Path,
                                                                                         monkeypatch) -> None:  # noqa: ANN001
    """A terminal's action is committed before its pages are sent: they must not be lost to the secret."""
    import json

    import pytest

    from flows import runtime
    from tests.engine.conftest import make_project, wait_for

    root = make_project(repo_root, tmp_path / "site", only=("t-ladder",))
    (root / "var").mkdir(exist_ok=True)
    (root / "var" / "secret").write_text("the-service-accounts-own\n")
    (root / "var" / "secret").chmod(0o644)
    monkeypatch.setenv("SOP_DATABASE_URL", f"sqlite:///{root / 'var' / 'ledger.db'}")
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    monkeypatch.delenv("SOP_SECRET", raising=False)
    engine = runtime.engine(root, prefect=False)
    try:
        run_id = engine.start("t-ladder", initiator="li-wei").run_id
        primary = engine.person_for("sre-oncall")  # the step is theirs: who is on call this week (it rotates)
        inbox = root / "var" / "inbox" / f"{primary}.jsonl"
        page = wait_for(lambda: [p for p in map(json.loads, inbox.read_text().splitlines()) if run_id in p["body"]]
                        if inbox.exists() else None, 10, "the assignee's page")[0]
        assert "Assigned to you" in page["title"] and "/s/" not in page["body"]  # was set aside: lost
        assert f"sop done {run_id} respond" in page["body"]  # the terminal's way still says what to do
    finally:
        engine.pager.close()
    with pytest.raises(SecretUnsafe, match="only its owner may read it"):
        runtime.engine(root, prefect=False, background_pages=True)  # a service: stops at its start
