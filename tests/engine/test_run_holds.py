"""A whole run on hold, on a manual clock: its active steps are held with it, its deadline and status
cadence stop, a step activated meanwhile starts held; released, everything moves by the time held; past
the SOP's max_hold it ends and escalates; refusals write nothing; the audit counts a run hold once."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.engine.holds import HoldNotAllowed, HoldReasonRefused
from flows.engine.inputs import StepNotActive
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.language.library import Library, load_library
from flows.language.steps.human import HumanReport
from flows.ledger.schema import holds, records
from tests.engine.conftest import make_project
from tests.engine.test_business_time import engine_at, kinds, pages

RUN_HOLD = """\
id: t-run-hold
title: Run hold probe
class: complaint
owner: growth-lead
deadline: 4h
waiting_for: [customer, platform_reply]
max_hold: 2h
escalation:
  - at: 50%
    notify: [assignee]
steps:
  - id: first
    title: First answer
    assignee: ads-specialist
    due: 1h
  - id: side
    title: Side check
    assignee: ads-specialist
    due: 2h
  - id: then
    title: After the first
    assignee: ads-specialist
    due: 1h
    needs: [first]
"""

T0 = datetime(2026, 3, 9, 2, tzinfo=UTC)
REMINDERS = ("reminder", "overdue", "escalated", "status_due", "run_overdue")


@pytest.fixture(scope="module")
def library(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = make_project(repo_root, tmp_path_factory.mktemp("run-hold"), only=())
    (root / "sops" / "t-run-hold.yaml").write_text(textwrap.dedent(RUN_HOLD))
    return load_library(root)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.ledger.read() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(holds)).scalar_one())


def test_a_run_hold_stops_the_run_clock_and_its_steps_and_release_moves_everything_by_the_time_held(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_at(library, tmp_path, T0, monkeypatch)
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    service = TimerService(engine)
    service.advance_to(T0 + timedelta(minutes=10))
    max_at = engine.hold_run(run, Actor("zhang-min", via="cli"), "customer", "waiting for the brand's answer")
    assert max_at == T0 + timedelta(hours=2, minutes=10)
    view = engine.view(run)
    assert view.steps["first"]["held_at"] == view.steps["side"]["held_at"] == T0 + timedelta(minutes=10)
    [held] = kinds(engine, run, "run_held")
    assert (held["actor"], held["via"], held["reason"], held["steps"]) == ("zhang-min", "cli", "customer",
                                                                             ["first", "side"])
    assert [(h["step"], h["run_hold"], h["via"]) for h in kinds(engine, run, "step_held")] == [
        ("first", True, "cli"), ("side", True, "cli")]

    # past the 50% reminders, first's due, side's reminder and the 30m status ask: nothing fires
    service.advance_to(T0 + timedelta(hours=1, minutes=40))
    assert kinds(engine, run, "escalation") == [] and kinds(engine, run, "step_overdue") == []
    assert kinds(engine, run, "status_asked") == [] and kinds(engine, run, "run_overdue") == []
    assert not [p for p in pages(engine, run) if p[0] in REMINDERS]

    # a step that becomes active while the run is held starts held
    engine.report(run, "first", HumanReport(actor="liu-yang", values={}))
    view = engine.view(run)
    assert view.steps["then"]["state"] == "active" and view.steps["then"]["held_at"] == T0 + timedelta(hours=1, minutes=40)
    assert kinds(engine, run, "step_held")[-1]["step"] == "then" and kinds(engine, run, "step_held")[-1]["run_hold"]
    with pytest.raises(StepNotActive, match="on hold with its run"):
        engine.release(run, "then", "liu-yang")

    service.advance_to(T0 + timedelta(hours=1, minutes=50))
    deadline = engine.release_run(run, Actor("li-wei", via="web"), "they answered")  # an operator
    assert deadline == T0 + timedelta(hours=5, minutes=40)  # 4h + 1h40m held
    view = engine.view(run)
    assert view.run["deadline_at"] == deadline
    assert view.steps["side"]["due_at"] == T0 + timedelta(hours=3, minutes=40)  # 2h + 1h40m
    assert view.steps["then"]["due_at"] == T0 + timedelta(hours=2, minutes=50)  # 1h40m + 1h + 10m held
    assert not view.steps["side"]["held_at"] and not view.steps["then"]["held_at"]
    [released] = kinds(engine, run, "run_released")
    assert (released["actor"], released["via"], released["ended"], released["held_s"]) == (
        "li-wei", "web", "released", 100 * 60)
    assert {r["step"] for r in kinds(engine, run, "step_released") if r.get("run_hold")} == {"side", "then"}

    # the status ask and the run's deadline come back, later by the time held
    service.advance_to(T0 + timedelta(hours=2, minutes=9))
    assert kinds(engine, run, "status_asked") == []
    service.advance_to(T0 + timedelta(hours=2, minutes=10))
    assert len(kinds(engine, run, "status_asked")) == 1
    service.advance_to(deadline - timedelta(minutes=1))
    assert kinds(engine, run, "run_overdue") == []
    service.advance_to(deadline)
    assert len(kinds(engine, run, "run_overdue")) == 1


def test_a_run_hold_refused_writes_nothing(library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_at(library, tmp_path, T0, monkeypatch)
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    before = counts(engine)
    with pytest.raises(HoldReasonRefused, match="`lunch` is not a reason to hold run .*: t-run-hold may wait for "
                                                "customer, platform_reply"):
        engine.hold_run(run, "zhang-min", "lunch")
    with pytest.raises(HoldNotAllowed, match="he-xin may not put on hold run .*: only its owner \\(growth-lead\\)"):
        engine.hold_run(run, "he-xin", "customer")
    with pytest.raises(StepNotActive, match="is not on hold"):
        engine.release_run(run, "zhang-min")
    assert counts(engine) == before
    assert engine.view(run).steps["first"]["held_at"] is None


def test_a_run_hold_past_its_maximum_ends_and_escalates_each_held_step(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_at(library, tmp_path, T0, monkeypatch)
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    engine.hold_run(run, "zhang-min", "platform_reply")
    service = TimerService(engine)
    service.advance_to(T0 + timedelta(hours=1, minutes=59))
    assert kinds(engine, run, "run_released") == []
    service.advance_to(T0 + timedelta(hours=2))
    [expired] = kinds(engine, run, "run_released")
    assert expired["ended"] == "expired" and expired["actor"] is None
    assert engine.view(run).run["deadline_at"] == T0 + timedelta(hours=6)
    escalated = [p for p in pages(engine, run) if p[0] == "escalated"]
    assert escalated == [("escalated", "first", ["lead", "owner"]), ("escalated", "side", ["lead", "owner"])]


def test_the_audit_counts_a_run_hold_once_and_judges_the_run_deadline_both_ways(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.audit import Audit

    engine = engine_at(library, tmp_path, T0, monkeypatch)
    run = engine.start("t-run-hold", initiator="zhang-min").run_id
    service = TimerService(engine)
    engine.hold_run(run, "zhang-min", "customer")
    service.advance_to(T0 + timedelta(hours=1))
    engine.release_run(run, "zhang-min")  # two steps held one hour: one hold of one hour
    service.advance_to(T0 + timedelta(hours=4, minutes=30))  # past the 4h deadline, within the moved 5h
    for step in ("first", "side", "then"):
        engine.report(run, step, HumanReport(actor="liu-yang", values={}))
    report, _ = Audit(engine.ledger).report(sop="t-run-hold")
    o = report.overall
    assert (o.holds, o.held_s) == (1, 3600.0)
    assert (o.met, o.missed, o.met_wall, o.missed_wall) == (1, 0, 0, 1)
