"""A run whose flow run cannot be created never wedges and never floods the log.

Seen: Prefect refused a run's parameters (> 512 KB); the launcher retried about once a second
with no limit, each log line quoting the whole input (38 MB of log in 20 s), and the run stayed
"running" with its automated steps never run. Now: inputs Prefect cannot take are refused
before anything is written; any launch failure is retried with exponential backoff, logged
once per change, and after the limit the run is marked, its owner paged, and it shows in
``sop status`` and the audit.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from flows.audit import Audit
from flows.engine.board import status_rows
from flows.engine.inputs import MAX_INPUTS_BYTES
from flows.engine.transitions import Engine, InputRefused
from flows.ledger.schema import outbox, records
from flows.prefect.launcher import LAUNCH_ATTEMPTS, LAUNCH_RETRY_MAX_S, Launcher, LaunchError
from tests.conftest import TestDatabase
from tests.engine.test_new_run import clock, library, local  # noqa: F401  (the same local engine)

#: what Prefect's 422 quoted back: every parameter of the refused flow run
REFUSAL = "Flow run parameters must be less than 524,288 bytes when serialized (got 1,000,133 bytes). " + (
    '{"service": "' + "x" * 1_000_000 + '"}')


class Seconds:
    """The launcher's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failing_launcher(engine: Engine, seconds: Seconds, fails: int = 10**6) -> tuple[Launcher, list[float]]:
    """A launcher whose Prefect refuses the first ``fails`` flow runs; returns it and the instants it tried."""
    launcher = Launcher(engine.ledger, "http://127.0.0.1:9/api", clock=seconds)
    launcher.engine = engine
    tried: list[float] = []

    def launch(run_id: str, **_: Any) -> str:
        tried.append(seconds.now)
        if len(tried) <= fails:
            raise LaunchError(f"Prefect did not create the flow run: {REFUSAL}")
        with engine.ledger.transaction() as tx:
            tx.conn.execute(sa.text("UPDATE runs SET flow_run_id = 'fr-1' WHERE id = :id"), {"id": run_id})
        return "fr-1"

    launcher.launch = launch  # type: ignore[method-assign]
    return launcher, tried


def said_of(caplog: pytest.LogCaptureFixture, run_id: str) -> list[str]:
    """The launcher's log lines about ``run_id`` (the package's stack shares this process and its logger)."""
    return [r.getMessage() for r in caplog.records if f"run={run_id}" in r.getMessage()]


def orphan(engine: Engine, clock: Any) -> str:  # noqa: F811
    """A run recorded and paged, its flow run never created (what launch_orphans looks for)."""
    run_id = engine.start("t-newrun", {"service": "big"}, initiator="monitor").run_id
    clock.sleep(10)
    return run_id


def test_a_launch_that_keeps_failing_backs_off_then_pages_the_owner_once(
    local: Engine, clock: Any, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    run_id = orphan(local, clock)
    seconds = Seconds()
    launcher, tried = failing_launcher(local, seconds)
    with caplog.at_level(logging.INFO, logger="sop.launcher"):
        for _ in range(3_000):  # the nudger's loop, every 0.5 s for 25 minutes
            launcher.launch_orphans(older_than=5)
            seconds.now += 0.5
    gaps = [round(b - a) for a, b in zip(tried, tried[1:], strict=False)]
    assert gaps[: LAUNCH_ATTEMPTS - 1] == [2**n for n in range(LAUNCH_ATTEMPTS - 1)]  # 1, 2, 4 … 256 s
    assert gaps[LAUNCH_ATTEMPTS - 1:] == [LAUNCH_RETRY_MAX_S] * 3  # then every 5 minutes: 13 tries in 25 minutes
    lines = said_of(caplog, run_id)
    assert [line.split()[0] for line in lines] == ["event=launch_failed", "event=launch_given_up"]  # once per change
    assert sum(len(line) for line in lines) < 1000 and all("\n" not in line for line in lines)

    with local.ledger.read() as conn:
        given_up = conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == run_id) & (records.c.kind == "launch_given_up"))).scalars().all()
        paged = conn.execute(sa.select(outbox.c.kind, outbox.c.targets).where(outbox.c.run_id == run_id)).all()
    [data] = [json.loads(d) for d in given_up]
    assert data["attempts"] == LAUNCH_ATTEMPTS
    assert data["reason"].startswith("cannot start automated steps: Prefect did not create the flow run: Flow run "
                                     "parameters must be less than 524,288 bytes") and len(data["reason"]) < 400
    assert ("automation_failed", json.dumps(["sre-lead"])) in [(k, t) for k, t in paged]  # the owner

    [row] = status_rows(local, run_id)  # `sop status`
    assert row["status"] == "running" and row["automation"] == data["reason"]
    story = Audit(local.ledger).show(run_id)  # `sop audit show`
    assert any(e["kind"] == "launch_given_up" and "cannot start automated steps" in e["text"] and "owner paged"
               in e["text"] for e in story["timeline"])


def test_a_launch_back_after_the_owner_was_paged_starts_the_automated_steps(
    local: Engine, clock: Any, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    run_id = orphan(local, clock)
    seconds = Seconds()
    launcher, tried = failing_launcher(local, seconds, fails=LAUNCH_ATTEMPTS + 1)  # Prefect away for ~14 minutes
    with caplog.at_level(logging.INFO, logger="sop.launcher"):
        for _ in range(2_500):
            launcher.launch_orphans(older_than=5)
            seconds.now += 0.5
    assert len(tried) == LAUNCH_ATTEMPTS + 2 and local.view(run_id).run["flow_run_id"] == "fr-1"
    assert [line.split()[0] for line in said_of(caplog, run_id)] == [
        "event=launch_failed", "event=launch_given_up", "event=launch_recovered"]
    assert status_rows(local, run_id)[0]["automation"] is None  # `sop status` no longer says it


def test_sop_status_says_why_the_automated_steps_cannot_start(database: TestDatabase, repo_root: Any, tmp_path: Any, sop: Any) -> None:
    from flows.language.library import load_library
    from flows.ledger import Ledger

    ledger = Ledger(database.url_at(tmp_path / "ledger.db"))
    ledger.migrate()
    run_id = Engine(load_library(repo_root), ledger).start("traffic-surge", {}, initiator="ana").run_id
    Launcher(ledger, "http://127.0.0.1:9/api").give_up(run_id, "Prefect did not create the flow run: [/] 422", 10)
    shown = sop("status", run_id, env={"SOP_DATABASE_URL": ledger.url})
    assert shown.returncode == 0, shown.stderr
    assert "cannot start automated steps: Prefect did not create the flow run: [/] 422" in shown.stdout
    ledger.dispose()


def test_a_launch_that_recovers_says_so_once_and_stops_trying(
    local: Engine, clock: Any, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    run_id = orphan(local, clock)
    seconds = Seconds()
    launcher, tried = failing_launcher(local, seconds, fails=3)
    with caplog.at_level(logging.INFO, logger="sop.launcher"):
        for _ in range(100):
            launcher.launch_orphans(older_than=5)
            seconds.now += 0.5
    assert len(tried) == 4 and local.view(run_id).run["flow_run_id"] == "fr-1"
    assert [line.split()[0] for line in said_of(caplog, run_id)] == ["event=launch_failed", "event=launch_recovered"]
    assert status_rows(local, run_id)[0]["automation"] is None


def test_inputs_prefect_cannot_take_are_refused_before_anything_is_written(local: Engine) -> None:  # noqa: F811
    from prefect.settings.models.server.api import ServerAPISettings

    assert MAX_INPUTS_BYTES == ServerAPISettings().max_parameter_size  # what Prefect's server refuses
    with local.ledger.read() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one()
    with pytest.raises(InputRefused, match="input `service`: the inputs are 1,000,0.. bytes as JSON"):
        local.start("t-newrun", {"service": "x" * 1_000_000}, initiator="monitor")
    with pytest.raises(InputRefused, match="more than a run takes"):
        local.start("t-newrun", {"service": "汉" * (MAX_INPUTS_BYTES // 6 + 1)}, initiator="monitor")  # \uXXXX each
    with local.ledger.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one() == before


def test_a_busy_prefect_answering_503_fails_a_launch_in_seconds_not_minutes(database: TestDatabase, repo_root: Any,
                                                                             tmp_path: Any) -> None:
    """Prefect on SQLite answers 503 while its database is locked. Its client would retry 5 times, 2 to 32 s apart
    (a `sop run` then sat minutes on one launch); a launch tries once more, then leaves the run to the nudger."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from flows.language.library import load_library
    from flows.ledger import Ledger

    calls: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def _busy(self) -> None:
            calls.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "38")
            self.end_headers()
            self.wfile.write(b'{"exception_message": "Service Unava"}')

        do_GET = do_POST = _busy  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ledger = Ledger(database.url_at(tmp_path / "ledger.db"))
    ledger.migrate()
    try:
        run_id = Engine(load_library(repo_root), ledger).start("traffic-surge", {}, initiator="ana").run_id
        launcher = Launcher(ledger, f"http://127.0.0.1:{server.server_address[1]}/api")
        began = time.monotonic()
        with pytest.raises(LaunchError, match="503"):
            launcher.launch(run_id)
        took = time.monotonic() - began
        assert len(calls) == 2, calls  # the call and one retry
        assert took < 15, f"a launch against a busy Prefect took {took:.0f} s"
    finally:
        server.shutdown()
        ledger.dispose()
