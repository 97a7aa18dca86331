"""`sop run` never hangs on a slow Prefect server: the run is recorded and paged, `sop serve` launches it later."""

from __future__ import annotations

import socket
import time

import pytest

from flows.cli import runs as cli_runs
from flows.prefect.launcher import Launcher
from tests.conftest import TestDatabase


@pytest.fixture
def hanging_server():
    """A real socket on 127.0.0.1 that accepts connections and never answers (a Prefect server stuck on a lock)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/api"
    server.close()


def test_a_launch_that_does_not_answer_is_left_to_sop_serve(database: TestDatabase, repo_root, tmp_path, monkeypatch, capsys,
                                                          hanging_server):
    from flows import runtime
    from tests.engine.conftest import make_project

    root = make_project(repo_root, tmp_path / "site")
    monkeypatch.setenv("SOP_DATABASE_URL", database.url_at(root / "var" / "ledger.db"))
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    monkeypatch.setattr(cli_runs, "LAUNCH_WAIT_S", 0.5)
    engine = runtime.engine(root, prefect=False)
    engine.launcher = Launcher(engine.ledger, hanging_server, "test-pool")
    run = engine.start("t-http", {}, initiator="li-wei", launch=False)

    began = time.monotonic()
    cli_runs._launch(engine, run.run_id)
    assert time.monotonic() - began < 2.0  # bounded, not the client's minute of retries
    err = " ".join(capsys.readouterr().err.split())  # Rich wraps at the terminal width
    assert "creating the flow run did not answer within 0.5s" in err and "`sop serve` creates it" in err
    view = engine.view(run.run_id)
    assert view.is_open and view.run["flow_run_id"] is None  # what the nudger's launch_orphans picks up
    engine.pager.close()
