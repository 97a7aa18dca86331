"""A hold tells the people whose steps it pauses, and tells them again when their steps run, with the new due.

One page per person per hold, however many of their steps it pauses; not to who put the hold on or released it.
No Prefect: a real SQLite ledger, the real engine and pager, the local inbox, time on a manual clock.
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
from tests.engine.conftest import clocked_engine_of
from tests.engine.test_run_holds import RUN_HOLD

T0 = datetime(2026, 3, 9, 2, tzinfo=UTC)  # 10:00 in Shanghai, where liu-yang and zhang-min are


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'ledger.db'}",
                                 ManualClock(T0), {"t-run-hold": RUN_HOLD})  # ads-specialist: liu-yang


def told(engine: Any, person: str, *starts: str) -> list[tuple[str, str]]:
    """(title, body on one line) of the messages ``person`` got whose title starts (after [Pn]) with ``starts``."""
    engine.pager.close()  # every page delivered
    return [(m["title"], " ".join(m["body"].split())) for m in read_inbox(person, engine.inbox)
            if m["title"].split("] ", 1)[1].startswith(starts)]


def test_a_run_hold_tells_each_person_once_that_their_steps_are_paused_and_then_their_new_dues(engine: Any) -> None:
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    TimerService(engine).advance_to(T0 + timedelta(minutes=10))
    engine.hold_run(run, Actor("zhang-min", via="cli"), "customer", "waiting for the brand's answer")

    [(title, body)] = told(engine, "liu-yang", "Paused", "Running again")  # two steps of his: one page
    assert title == "[P1] Paused: 2 of your steps (Run hold probe), on hold for customer", title
    assert "your steps are paused with the whole run: customer, by Zhang Min 张敏 (waiting for the brand's answer)" in body
    assert "Their clocks are stopped" in body
    assert "**First answer** (`first`), was due 2026-03-09 11:00 (Asia/Shanghai)" in body
    assert "**Side check** (`side`), was due 2026-03-09 12:00 (Asia/Shanghai)" in body
    assert "the hold ends 2026-03-09 12:10 (Asia/Shanghai) and escalates" in body
    assert told(engine, "zhang-min", "Paused") == []  # who put it on hold knows

    TimerService(engine).advance_to(T0 + timedelta(minutes=40))
    engine.release_run(run, Actor("li-wei", via="web"), "they answered")
    [_, (title, body)] = told(engine, "liu-yang", "Paused", "Running again")
    assert title == "[P1] Running again: 2 of your steps (Run hold probe)", title
    assert "your steps are running again: Li Wei 李伟 released the hold (customer): they answered." in body
    assert "**First answer** (`first`): now due 2026-03-09 11:30 (Asia/Shanghai) (50m left)" in body  # 30m later
    assert "**Side check** (`side`): now due 2026-03-09 12:30 (Asia/Shanghai)" in body


def test_a_step_hold_tells_its_holder_it_is_paused_and_when_it_is_due_once_released(engine: Any) -> None:
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    engine.hold(run, "side", Actor("zhang-min"), "platform_reply", "the platform answers by noon")

    [(title, body)] = told(engine, "liu-yang", "Paused", "Running again")
    assert title == "[P1] Paused: Side check (Run hold probe), on hold for platform_reply", title
    assert ("your step **Side check** is paused: platform_reply, by Zhang Min 张敏 (the platform answers by noon). "
            "Its clock is stopped") in body

    TimerService(engine).advance_to(T0 + timedelta(minutes=25))
    engine.release(run, "side", Actor("zhang-min"))
    [_, (title, body)] = told(engine, "liu-yang", "Paused", "Running again")
    assert title == "[P1] Running again: Side check (Run hold probe), now due 2026-03-09 12:25 (Asia/Shanghai)", title
    assert "It is now due 2026-03-09 12:25 (Asia/Shanghai) (2h left), moved later by the time held" in body

    engine.hold(run, "first", Actor("liu-yang"), "customer")  # his own hold: he knows, nobody else's step
    assert len(told(engine, "liu-yang", "Paused", "Running again")) == 2


def test_a_step_that_starts_while_its_run_is_on_hold_is_assigned_as_paused_and_told_when_it_runs(engine: Any) -> None:
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    TimerService(engine).advance_to(T0 + timedelta(minutes=10))
    engine.hold_run(run, Actor("zhang-min", via="cli"), "customer", "waiting for the brand's answer")
    engine.report(run, "first", HumanReport(actor="liu-yang", values={}))  # `then` starts, held with its run

    [(title, body)] = told(engine, "liu-yang", "Assigned to you, paused")
    assert title == "[P1] Assigned to you, paused: After the first (Run hold probe), on hold for customer", title
    assert ("you are assigned **After the first** in a P1 run of **Run hold probe**. **It is paused with the whole "
            "run:** on hold for customer, by Zhang Min 张敏 (waiting for the brand's answer). Its clock is stopped") in body
    assert "You are told again when it runs, with its new due; unless released first, the hold ends " \
           "2026-03-09 12:10 (Asia/Shanghai) and escalates." in body
    assert "### When it is done, report it" in body  # still theirs to do
    assert "**Due:** 2026-03-09 11:10 (Asia/Shanghai) (paused)" in body  # 1h from 10:10, as it stands

    TimerService(engine).advance_to(T0 + timedelta(minutes=40))
    engine.release_run(run, Actor("li-wei", via="web"))
    [(title, body)] = told(engine, "liu-yang", "Running again")
    assert title == "[P1] Running again: 2 of your steps (Run hold probe)", title
    assert "**After the first** (`then`): now due 2026-03-09 11:40 (Asia/Shanghai) (1h left)" in body  # moved 30m


def test_a_step_handed_over_on_hold_tells_its_new_holder_it_is_paused_and_then_when_it_runs(engine: Any) -> None:
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    engine.hold(run, "side", Actor("zhang-min"), "platform_reply", "the platform answers by noon")
    engine.hand_over(run, "side", Actor("zhang-min"), "sun-hao", "Sun Hao knows the platform")

    [(title, body)] = told(engine, "sun-hao", "Handed to you")
    assert title == "[P1] Handed to you, paused: Side check (Run hold probe), on hold for platform_reply", title
    assert ("**It is paused:** on hold for platform_reply, by Zhang Min 张敏 (the platform answers by noon). Its clock is "
            "stopped") in body

    TimerService(engine).advance_to(T0 + timedelta(minutes=25))
    engine.release(run, "side", Actor("zhang-min"))
    [(title, _)] = told(engine, "sun-hao", "Running again")
    assert title == "[P1] Running again: Side check (Run hold probe), now due 2026-03-09 12:25 (Asia/Shanghai)", title
    assert told(engine, "liu-yang", "Running again") == []  # not his any more (he was told it was handed away)
