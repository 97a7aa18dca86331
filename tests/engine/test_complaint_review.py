"""The library's complaint-review (R5) as its owner, the CS lead Sara Lopez, runs it (walk 40, items 11 and 17).

Her ticket reading waits on the call-recording export: she may put it on hold for it, and its clock stops; a step
that waits on nobody outside (the root-cause session) may not be held. The 24 h review asks her for a status update
every 4 hours about the review (not every 30 minutes about crisis PR's sentiment), and she may snooze an ask over
her night. No Prefect: a real SQLite ledger, the real engine and pager, the local inbox, time on a manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.inputs import InputRefused
from flows.engine.timers import TimerService
from flows.language.actors import Actor
from flows.language.steps.human import HumanReport
from notifications import read_inbox
from tests.engine.conftest import clocked_engine_of, records

T0 = datetime(2026, 3, 9, 8, tzinfo=UTC)  # 09:00 in Madrid, where sara-lopez is


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    review = (repo_root / "sops" / "complaint-review.yaml").read_text()
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'ledger.db'}",
                                 ManualClock(T0), {"complaint-review": review})


def told(engine: Any, person: str, start: str) -> list[tuple[str, str]]:
    """(title, body on one line) of the messages ``person`` got whose title starts (after [Pn]) with ``start``."""
    engine.pager.close()  # every page delivered
    return [(m["title"], " ".join(m["body"].split())) for m in read_inbox(person, engine.inbox)
            if m["title"].split("] ", 1)[1].startswith(start)]


def test_the_cs_lead_holds_her_ticket_reading_for_the_call_recordings_and_its_clock_stops(engine: Any) -> None:
    run = engine.start("complaint-review", {"month": "2026-02"}, initiator="li-wei").run_id
    view = engine.view(run)
    tickets = view.sop.step("tickets")
    assert engine.may_hold(view, tickets, "sara-lopez")  # her step page offers "Put on hold"
    with pytest.raises(InputRefused, match="it may wait for ticket_export, call_recordings"):
        engine.hold(run, "tickets", "sara-lopez", "customer")
    due = view.steps["tickets"]["due_at"]
    engine.hold(run, "tickets", Actor("sara-lopez", via="web"), "call_recordings", "the export is due at noon")
    TimerService(engine).advance_to(T0 + timedelta(hours=3))
    released_due = engine.release(run, "tickets", "sara-lopez", "the recordings are in")
    assert released_due == due + timedelta(hours=3)  # 6h from her start, plus the 3h she waited
    [held] = records(engine, run, "step_held")
    assert (held["actor"], held["data"]["reason"]) == ("sara-lopez", "call_recordings")

    # the session with the analyst and the owners waits on nobody outside: no hold is offered or taken
    engine.report(run, "data", HumanReport(actor="priya-nair", evidence=["https://bi.example/complaints-2026-02"],
                                           values={"complaint_rate_pct": 2.4, "top_driver": "agent_attitude_or_speed",
                                                   "driver_share_pct": 60}))
    engine.report(run, "tickets", HumanReport(actor="sara-lopez", values={
        "tickets_read": 50, "process_gaps": "refunds need a supervisor"}))
    view = engine.view(run)
    assert view.state("rootcause") == "active"
    assert not engine.may_hold(view, view.sop.step("rootcause"), "sara-lopez")
    with pytest.raises(InputRefused, match="step `rootcause` cannot be put on hold"):
        engine.hold(run, "rootcause", "sara-lopez", "call_recordings")


def test_the_review_asks_the_cs_lead_every_4h_about_the_review_and_she_may_snooze_over_her_night(engine: Any) -> None:
    run = engine.start("complaint-review", {"month": "2026-02"}, initiator="li-wei").run_id
    service = TimerService(engine)
    service.advance_to(T0 + timedelta(hours=3, minutes=59))
    assert told(engine, "sara-lopez", "Status update due") == []  # not every 30 minutes
    service.advance_to(T0 + timedelta(hours=4))
    [(title, body)] = told(engine, "sara-lopez", "Status update due")
    assert title.startswith("[P1] Status update due")
    assert "What the review found so far (top driver, process gaps)" in body
    assert "sentiment" not in body  # crisis PR's question is not hers

    engine.post_update(run, "sara-lopez", "tickets: refunds need a supervisor; the analyst is on the breakdown")
    service.advance_to(T0 + timedelta(hours=12))  # 21:00 in Madrid: asked again, she answers
    engine.post_update(run, "sara-lopez", "root causes found; the plan is written tomorrow at 09:00")
    service.advance_to(T0 + timedelta(hours=12, minutes=10))
    assert len(told(engine, "sara-lopez", "Status update due")) == 3  # 13:00, 17:00, 21:00
    with pytest.raises(InputRefused, match="a snooze is up to 8h"):
        engine.snooze(run, "sara-lopez", timedelta(hours=9), "asleep")
    until = engine.snooze(run, "sara-lopez", timedelta(hours=8), "night in Madrid: an update at 09:00")
    assert until == T0 + timedelta(hours=24)  # the 01:00 ask moved to 09:00 in Madrid, the next morning
    service.advance_to(T0 + timedelta(hours=23, minutes=59))
    assert len(told(engine, "sara-lopez", "Status update due")) == 3  # a quiet night
