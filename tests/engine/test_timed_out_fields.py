"""A step that timed out to its fallback: the steps that need it wait for the fallback and go on once it is done.

Its owner's page says so ("the steps that need it wait for … instead"); they were blocked the moment it timed out,
and the run ended `done` without them. It has no form fields then: a `when` reading one fails that step, and the
run with it, hours after the step timed out: `sop validate` now refuses such an SOP
(tests/language/test_timed_out_steps.py), naming the guard; with the guard the run goes on.
No Prefect: a real SQLite ledger, the real engine and timer service, time on a manual clock at ×600.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.timers import TimerService
from flows.language.library import LoadedSop, pinned_sop
from flows.language.steps.human import HumanReport
from tests.engine.conftest import clocked_engine_of, records

START = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
SPEED = 600

#: `call` (priya-nair, data-analyst) falls back to `mail` (liu-yang, ads-specialist) when not reported in 30 minutes
FALLBACK = """\
id: {id}
title: Reach the supplier
class: routine
owner: growth-lead
steps:
  - id: call
    title: Reach the supplier by phone
    assignee: data-analyst
    due: 30m
    on_timeout: fallback:mail
    form:
      answer: {{type: string, enum: [agreed, refused]}}
  - id: mail
    title: Write to the supplier
    assignee: ads-specialist
    due: 1h
  - id: order
    title: Place the order
    assignee: data-analyst
    needs: [call]
    when: "{when}"
  - id: thank
    title: Thank the supplier
    assignee: data-analyst
    needs: [call]
"""
UNGUARDED = FALLBACK.format(id="t-unguarded", when="{{ steps.call.answer == 'agreed' }}")
GUARDED = FALLBACK.format(id="t-guarded", when="{{ steps.call.outcome == 'done' and steps.call.answer == 'agreed' }}")


#: as GUARDED, but `mail` fails when it is not done in its hour
FAILING = GUARDED.replace("id: t-guarded", "id: t-failing").replace("    due: 1h\n", "    due: 1h\n    on_timeout: fail\n")


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'ledger.db'}",
                                 ManualClock(START), {"t-guarded": GUARDED, "t-failing": FAILING})


def timed_out(engine: Any, sop_id: str) -> str:
    """A run where nobody reports `call` in time: it times out, and `mail` is asked instead."""
    run = engine.start(sop_id, {}, initiator="zhang-min", speed=SPEED).run_id
    TimerService(engine).advance_to(START + timedelta(minutes=31) / SPEED)
    view = engine.view(run)
    assert (view.state("call"), view.state("mail")) == ("timed_out", "active")
    return run


def past_the_fallback(engine: Any, sop_id: str) -> Any:
    """As :func:`timed_out`, then `mail` is done: how the run stands."""
    run = timed_out(engine, sop_id)
    engine.report(run, "mail", HumanReport("liu-yang", values={}))
    return engine.view(run)


def test_the_steps_that_need_a_timed_out_step_wait_for_its_fallback_then_go_on(engine: Any) -> None:
    run = timed_out(engine, "t-guarded")
    assert engine.view(run).state("thank") == "pending"  # not blocked: `mail` stands in for `call`
    engine.report(run, "mail", HumanReport("liu-yang", values={}))
    view = engine.view(run)
    assert view.state("thank") == "active" and view.is_open  # asked of data-analyst now
    engine.report(run, "thank", HumanReport("priya-nair", values={}))
    assert engine.view(run).run["outcome"] == "done"


def test_a_when_reading_a_timed_out_steps_field_fails_the_run(engine: Any, tmp_path: Path) -> None:
    # sop validate now refuses this text: here it is as a run started before it did replays it (its pinned text)
    engine.library.sops["t-unguarded"] = LoadedSop(sop=pinned_sop("unguarded", UNGUARDED), path=tmp_path / "old.yaml",
                                                   text=UNGUARDED)
    view = past_the_fallback(engine, "t-unguarded")
    assert view.state("order") == "failed"
    engine.report(view.id, "thank", HumanReport("priya-nair", values={}))
    assert engine.view(view.id).run["outcome"] == "failed"
    [failed] = records(engine, view.id, "step_failed")
    assert "`when` could not be evaluated" in failed["data"]["reason"]
    assert "has no attribute 'answer'" in failed["data"]["reason"]


def test_with_the_guard_validate_names_the_run_goes_on(engine: Any) -> None:
    view = past_the_fallback(engine, "t-guarded")
    assert view.state("order") == "skipped" and view.state("thank") == "active"


def test_when_the_fallback_fails_the_steps_that_waited_for_it_are_blocked_and_the_run_fails(engine: Any) -> None:
    run = timed_out(engine, "t-failing")
    TimerService(engine).advance_to(START + timedelta(minutes=92) / SPEED)  # `mail` not done in its hour either
    view = engine.view(run)
    assert (view.state("mail"), view.state("order"), view.state("thank")) == ("failed", "blocked", "blocked")
    assert view.run["outcome"] == "failed"


def test_a_run_pinned_with_a_fallback_that_needs_its_step_ends_rather_than_wait_for_ever(engine: Any,
                                                                                         tmp_path: Path) -> None:
    """`sop validate` refuses a fallback that needs the step it stands in for; a run started before replays its
    pinned text: `mail` cannot wait for itself, so it and what needs `call` are blocked, and the run ends."""
    text = GUARDED.replace("id: t-guarded", "id: t-self").replace("    due: 1h\n", "    due: 1h\n    needs: [call]\n")
    engine.library.sops["t-self"] = LoadedSop(sop=pinned_sop("self", text), path=tmp_path / "old.yaml", text=text)
    run = engine.start("t-self", {}, initiator="zhang-min", speed=SPEED).run_id
    TimerService(engine).advance_to(START + timedelta(minutes=31) / SPEED)
    view = engine.view(run)
    assert (view.state("call"), view.state("mail"), view.state("thank")) == ("timed_out", "blocked", "blocked")
    assert not view.is_open
