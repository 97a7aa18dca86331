"""A run's "Finished" page: who started it reads it beside its owner, and it says what an ops manager asks first.

Li Wei started a game day from the board and never got its end: only the owner did, so she had to look. And the
page said "done: 9 of 11 steps done, 2 late", never that the run's deadline was missed nor that `legal` timed out
(its row read "skipped", on time "—"). No Prefect: the real engine, pager and timer service, the local inbox, the
test's database (SQLite, then PostgreSQL), time on a manual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.timers import TimerService
from flows.language.actors import Actor
from flows.language.steps.human import HumanReport
from notifications import read_inbox
from tests.conftest import TestDatabase
from tests.engine.conftest import clocked_engine_of

T0 = datetime(2026, 3, 9, 2, tzinfo=UTC)
#: an automated http step the rest needs (sre-lead, tom-becker, owns it): its failure ends the run
HTTP = Path(__file__).parent / "sops" / "t-http.yaml"

# growth-lead (zhang-min) owns it; priya-nair pulls the numbers, sun-hao's legal check times out and is skipped
PROBE = """\
id: t-finish
title: Finish probe
class: policy
owner: growth-lead
deadline: 1h
steps:
  - id: numbers
    title: Pull the numbers
    assignee: data-analyst
    due: 30m
    form:
      fine: {type: boolean}
  - id: legal
    title: Legal check
    assignee: compliance-officer
    due: 20m
    on_timeout: skip
  - id: recount
    title: Recount by hand
    needs: [numbers]
    when: "{{ not steps.numbers.fine }}"
    assignee: data-analyst
    due: 30m
  - id: broken
    title: Use the broken tool
    needs: [numbers]
    assignee: data-analyst
    due: 30m
"""

@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"),
                                 ManualClock(T0), {"t-finish": PROBE, "t-http": HTTP.read_text()})


def finished(engine: Any, person: str, kind: str = "Finished") -> list[tuple[str, str]]:
    """(title, body on one line) of the ``kind`` pages of the probe ``person`` got."""
    engine.pager.close()  # every page delivered
    return [(m["title"], " ".join(m["body"].split())) for m in read_inbox(person, engine.inbox)
            if m["title"].split("] ", 1)[-1].split("] ", 1)[-1].startswith(kind)]


def play(engine: Any, starter: Any, *, drill: bool = False) -> str:
    """Start the probe, let legal time out, pull the numbers late (past the run's deadline), use the tool."""
    trigger = {"kind": "drill"} if drill else None
    began = engine.clock.now()
    run = engine.start("t-finish", {}, initiator=starter, trigger=trigger, speed=1).run_id
    timers = TimerService(engine)
    timers.advance_to(began + timedelta(minutes=70))
    engine.report(run, "numbers", HumanReport(Actor("priya-nair"), values={"fine": True}))
    timers.advance_to(began + timedelta(minutes=75))
    engine.report(run, "broken", HumanReport(Actor("priya-nair")))
    assert not engine.view(run).is_open
    return run


def test_who_started_a_drill_reads_its_end_beside_its_owner(engine: Any) -> None:
    run = play(engine, Actor("li-wei", via="web"), drill=True)

    [(title, body)] = finished(engine, "li-wei")  # the ops manager who started it, once
    assert title.startswith("[DRILL] [P3] Finished: Finish probe"), title
    assert run in title
    assert len(finished(engine, "zhang-min")) == 1  # its owner, as before


def test_a_real_run_started_by_a_person_tells_them_too_and_a_machine_is_told_nothing(engine: Any) -> None:
    play(engine, Actor("sara-lopez", via="cli"))
    assert len(finished(engine, "sara-lopez")) == 1
    assert len(finished(engine, "zhang-min")) == 1

    play(engine, "alertmanager")  # no person started it: its owner alone, as before
    assert len(finished(engine, "zhang-min")) == 2


def test_the_owner_who_started_it_reads_it_once(engine: Any) -> None:
    play(engine, Actor("zhang-min", via="web"))
    assert len(finished(engine, "zhang-min")) == 1


def test_the_finished_page_says_the_deadline_was_missed_and_which_steps_timed_out_or_were_skipped(engine: Any) -> None:
    play(engine, Actor("li-wei", via="web"), drill=True)

    [(title, body)] = finished(engine, "li-wei")
    assert title.endswith("(done, deadline missed)"), title  # on a lock screen
    assert "**Deadline missed:** it ended 15m after its deadline." in body, body
    assert "**Timed out:** Legal check (skipped)." in body, body
    assert "**Skipped:** Recount by hand (its condition was not met)." in body, body
    assert "| Legal check (`legal`) | skipped | — | no |" in body  # timed out: not on time, and counted late
    assert "2 of 4 steps done, 2 late." in body


def test_a_run_that_ends_in_time_says_so(engine: Any) -> None:
    run = engine.start("t-finish", {}, initiator=Actor("li-wei", via="web"), speed=1).run_id
    timers = TimerService(engine)
    timers.advance_to(T0 + timedelta(minutes=5))
    engine.report(run, "numbers", HumanReport(Actor("priya-nair"), values={"fine": False}))
    engine.report(run, "legal", HumanReport(Actor("sun-hao")))
    engine.report(run, "recount", HumanReport(Actor("priya-nair")))
    engine.report(run, "broken", HumanReport(Actor("priya-nair")))

    [(title, body)] = finished(engine, "li-wei")
    assert "Deadline met." in body, body
    for absent in ("Timed out:", "Skipped:", "missed"):
        assert absent not in body


def test_a_failure_that_ends_the_run_is_the_one_page_its_starter_reads_too(engine: Any) -> None:
    run = engine.start("t-http", {}, initiator=Actor("li-wei", via="cli"), speed=1).run_id
    engine.complete(run, "call", {}, error="POST /limits answered HTTP 500")  # what needs it cannot start: it ends

    for person in ("li-wei", "tom-becker"):  # who started it and the owner: the failure's page, and no second one
        [(title, body)] = finished(engine, person, "Automated step failed")
        assert run in body and not finished(engine, person), title
        assert "the run has ended (failed)" in body


def test_a_step_that_failed_late_on_its_own_did_not_time_out(engine: Any) -> None:
    """The review's finding: "timed out" was guessed from times, so any step failed or skipped after its due read
    "Timed out" and counted late. It is what the timer service wrote when the deadline ended it."""
    from flows.engine.page_context import _summary_row
    from flows.ledger.vocabulary import StepState

    run = engine.start("t-finish", {}, initiator=Actor("li-wei", via="web"), speed=1).run_id
    view = engine.view(run)
    step = view.sop.step("legal")
    row = view.steps["legal"]
    late = row["due_at"] + timedelta(minutes=5)
    for state, note, timed_out in ((StepState.FAILED, "POST /legal answered HTTP 500", False),
                                   (StepState.SKIPPED, "its condition was not met", False),
                                   (StepState.FAILED, "timed out (on_timeout: fail)", True),
                                   (StepState.SKIPPED, "timed out (on_timeout: skip)", True)):
        view.steps["legal"] = {**row, "state": state, "note": note, "finished_at": late}
        assert _summary_row(view, step).timed_out is timed_out, (state, note)
