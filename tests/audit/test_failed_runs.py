"""A run that failed did not meet its deadline, however early it ended: an auditor does not call it on time."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from flows.audit import Audit
from flows.audit.model import MISSED, RunAudit
from flows.audit.timeline import describe
from flows.clock import ManualClock
from flows.engine.paging import Pager
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger
from tests.audit.conftest import HERE, T0, Story
from tests.conftest import TestDatabase


def test_a_run_whose_automated_step_failed_in_minutes_counts_as_missed(repo_root: Path, tmp_path: Path,
                                                                        database: TestDatabase) -> None:
    shutil.copytree(repo_root / "config", tmp_path / "config")
    shutil.copytree(HERE / "sops", tmp_path / "sops")
    clock = ManualClock(T0)
    ledger = Ledger(database.url_at(tmp_path / "ledger.db"), clock)
    ledger.migrate()
    library = load_library(tmp_path)
    engine = Engine(library, ledger, pager=Pager(library.site, ledger), clock=clock)
    story = Story(engine, clock)
    try:
        run = story.start("audit-routine", T0, initiator="tom-becker", trigger={"kind": "manual", "by": "tom-becker"})
        run.go(3)  # three minutes into a 2-hour deadline, the announcement fails for good
        engine.mark_running(run.id, "announce")
        engine.complete(run.id, "announce", {}, error="chat webhook answered HTTP 500")
        engine.advance(run.id)

        assert engine.view(run.id).run["outcome"] == "failed"
        audit = Audit(ledger)
        [line] = audit.lines(audit.window(None, None))
        assert (line.outcome, line.deadline) == ("failed", "missed")
        [row] = audit.report(audit.window(None, None))[0].by_sop
        assert (row.met, row.missed, row.on_time_pct) == (0, 1, 0.0)
        [finished] = [e for e in audit.run(run.id).entries if e.kind == "run_finished"]
        assert finished.data["deadline_met"] is False
        assert describe(finished.kind, finished.data, finished.actor) == (
            "run finished: failed, deadline not met (the procedure was not carried out)")
    finally:
        ledger.dispose()


def test_a_failed_run_without_a_deadline_is_not_said_to_miss_one() -> None:
    said = describe("run_finished", {"outcome": "failed", "deadline_met": True}, None)  # no deadline: recorded True
    assert said == "run finished: failed (the procedure was not carried out)"


def test_a_failed_run_recorded_as_met_before_the_rule_is_read_as_missed() -> None:
    """Runs that failed before 2026-12-06 carry ``deadline_met: true`` when they ended in time."""
    run = RunAudit(id="r", sop_id="s", sop_hash="h", version="1", title="t", sop_class="incident", priority=1,
                   initiator="tom-becker", initiator_facts={}, trigger=None, inputs={}, speed=1.0, started_at=T0,
                   deadline_at=T0 + timedelta(hours=2), status="finished", outcome="failed",
                   ended_at=T0 + timedelta(minutes=3))
    run.deadline_met_recorded = True
    assert run.deadline(T0 + timedelta(hours=5)) == MISSED
    # and on wall time (a calendar's deadline counted round the clock, or one moved by holds): missed too
    run.first_deadline_at = T0 + timedelta(hours=2)
    assert run.deadline_wall(T0 + timedelta(hours=5)) == MISSED
