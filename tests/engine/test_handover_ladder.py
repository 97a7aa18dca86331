"""A hand-over and the escalation ladder, on compressed time: the new holder gets one rung before anyone is paged.

No Prefect: a real ledger in the test's folder, the real engine, pager and timer service, time
on a manual clock. The probe is traffic-surge's `command` step as far as the ladder goes: due
10m; the assignee at 50%, the lead and backup at 100%, then the owner (sre-lead) and the
ops director every 10m, six times. The week of 2026-03-02 zhao-lei is sre-oncall.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.audit.timeline import describe
from flows.clock import ManualClock
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.language.library import load_library
from notifications import read_inbox
from tests.conftest import TestDatabase
from tests.engine.conftest import clocked_engine_of, records

READY = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # a Wednesday of zhao-lei's week

PROBE = """\
    id: t-surge
    title: Surge probe
    class: outage
    owner: sre-lead
    escalation:
      - at: 50%
        notify: [assignee]
      - at: 100%
        notify: [lead, backup]
      - every: 10m
        notify: [owner, ops-director]
        max: 6
    steps:
      - id: command
        title: Take command
        assignee: sre-oncall
        due: 10m
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(READY)


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, clock: ManualClock,
           monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"), clock,
                                 {"t-surge": PROBE})


def escalated_to(engine: Any, person: str) -> list[str]:
    """The titles of the escalations that reached the person's inbox (every page delivered first)."""
    engine.pager.close()
    return [m["title"] for m in read_inbox(person, engine.inbox) if "Escalated" in m["title"]]


def test_a_hand_over_by_the_director_gives_the_new_holder_one_rung_before_the_ladder_pages_her_again(
        engine: Engine, clock: ManualClock) -> None:
    run_id = engine.start("t-surge", {}, initiator="li-wei", speed=1).run_id
    service = TimerService(engine)
    service.advance_to(READY + timedelta(minutes=50))  # 40m overdue: the every-10m rung fired at 20, 30, 40, 50
    assert len(escalated_to(engine, "li-wei")) == 4
    clock.set(READY + timedelta(minutes=59, seconds=50))  # the next repeat is due in 10 seconds
    engine.hand_over(run_id, "command", Actor("li-wei", via="web"), "kenji-sato", "Checkout first")

    service.advance_to(READY + timedelta(minutes=69))  # the repeat due at 60 waits for kenji-sato's rung
    assert len(escalated_to(engine, "li-wei")) == 4
    service.advance_to(READY + timedelta(minutes=70))  # one rung (10m) after the hand-over: the ladder goes on
    titles = escalated_to(engine, "li-wei")
    assert len(titles) == 5 and "Take command" in titles[-1]
    service.advance_to(READY + timedelta(minutes=79))  # and every 10m from there, not from the old schedule
    assert len(escalated_to(engine, "li-wei")) == 5
    service.advance_to(READY + timedelta(minutes=80))
    assert len(escalated_to(engine, "li-wei")) == 6
    # the record keeps the move (the later rungs are armed from it) and the audit says it
    [handed] = records(engine, run_id, "step_handed_over")
    assert describe("step_handed_over", handed["data"], "li-wei") == \
        "li-wei (web) handed it to kenji-sato: Checkout first; its ladder's next level moved 9m50s later"
    fired = [r["data"] for r in records(engine, run_id, "escalation")]
    assert [(e["level"], e.get("holder")) for e in fired[-2:]] == [("3.5", "kenji-sato"), ("3.6", "kenji-sato")]
    assert fired[-1]["paged"] == ["tom-becker", "li-wei"]  # sre-lead's primary, the director


def test_teammates_passing_a_step_on_do_not_hold_the_ladder_off(engine: Engine, clock: ManualClock) -> None:
    """Only a hand-over by someone above the step gives its new holder a rung: two teammates handing it back and
    forth would keep the lead from ever being paged (review)."""
    run_id = engine.start("t-surge", {}, initiator="li-wei", speed=1).run_id
    service = TimerService(engine)
    service.advance_to(READY + timedelta(minutes=50))
    clock.set(READY + timedelta(minutes=59, seconds=50))
    engine.hand_over(run_id, "command", Actor("li-wei", via="web"), "kenji-sato")  # the director: one rung, to 69:50
    clock.set(READY + timedelta(minutes=65))
    engine.hand_over(run_id, "command", Actor("kenji-sato", via="web"), "tom-becker")  # a teammate: no more grace
    service.advance_to(READY + timedelta(minutes=70))
    assert len(escalated_to(engine, "li-wei")) == 5  # the repeat came at 69:50, not at 75


SKIPPED = """\
    id: t-skipped
    title: Skip probe
    class: outage
    owner: sre-lead
    steps:
      - id: optional
        title: Check the optional graph
        assignee: sre-oncall
        due: 10m
        on_timeout: skip
        escalation:
          - at: 100%
            notify: [ops-director]
"""


def test_a_hand_over_never_moves_a_rung_past_the_deadline_that_ends_the_step(engine: Engine, clock: ManualClock) -> None:
    """The grace would have moved the rung at 100% to 15m, after the skip at 10m: the director never told (review)."""
    (engine.library.root / "sops" / "t-skipped.yaml").write_text(textwrap.dedent(SKIPPED))
    engine.library = load_library(engine.library.root)
    run_id = engine.start("t-skipped", {}, initiator="li-wei", speed=1).run_id
    clock.set(READY + timedelta(minutes=5))
    engine.hand_over(run_id, "optional", Actor("tom-becker", via="web"), "kenji-sato")  # sre-lead: above the step
    TimerService(engine).advance_to(READY + timedelta(minutes=11))
    assert engine.view(run_id).state("optional") == "skipped"
    assert [t for t in escalated_to(engine, "li-wei") if "Check the optional graph" in t]
