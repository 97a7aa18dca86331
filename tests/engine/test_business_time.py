"""Business time and holds on a manual clock: a 48h step counts working days of cn-office (09:00-12:00,
13:00-17:00; a weekend, the 2026 Spring Festival and its make-up Saturday), compressed runs count the same calendar faster, and a
hold stops a step's clock and its reminders, moves its due instant, and escalates past its maximum."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from flows.clock import ManualClock
from flows.engine.inputs import InputRefused, StepNotActive
from flows.engine.paging import Pager
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.language.calendar import LATEST, Calendar, instant_after
from flows.language.durations import SPEED_MAX
from flows.language.library import Library, load_library
from flows.language.steps.human import HumanReport
from flows.ledger import Ledger
from flows.ledger.schema import outbox, pagers, records
from tests.engine.conftest import make_project

SH = ZoneInfo("Asia/Shanghai")

BIZ = """\
id: t-biz
title: Business-time probe (a creative refresh)
class: policy
owner: growth-lead
calendar: cn-office
deadline: 5d
waiting_for: [platform_reply, customer]
max_hold: 4h
escalation:
  - at: 50%
    notify: [assignee]
  - at: 100%
    notify: [lead]
steps:
  - id: refresh
    title: Refresh the creatives
    assignee: ads-specialist
    due: 48h
  - id: quick
    title: A four-hour answer
    assignee: ads-specialist
    due: 4h
    needs: [refresh]
"""

WALL = """\
id: t-wall-hold
title: Wall-time hold probe
class: complaint
owner: growth-lead
waiting_for: [customer]
max_hold: 1h
escalation:
  - at: 50%
    notify: [assignee]
steps:
  - id: answer
    title: Answer the customer
    assignee: ads-specialist
    due: 2h
"""


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH).astimezone(UTC)


@pytest.fixture(scope="module")
def library(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Library:
    root = make_project(repo_root, tmp_path_factory.mktemp("biz"), only=())
    (root / "sops" / "t-biz.yaml").write_text(textwrap.dedent(BIZ))
    (root / "sops" / "t-wall-hold.yaml").write_text(textwrap.dedent(WALL))
    return load_library(root)


def engine_at(library: Library, tmp_path: Path, at: datetime, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An engine on a manual clock set to ``at``; a pager process 'alive' so pages stay in the outbox."""
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    clock = ManualClock(at)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    ledger.migrate()
    far = datetime.now(UTC) + timedelta(days=1)
    with ledger.transaction() as tx:
        tx.conn.execute(pagers.insert().values(name="other:1", pid=1, started_at=far, beat_at=far))
    return Engine(library, ledger, pager=Pager(library.site, ledger), clock=clock)


def kinds(engine: Engine, run_id: str, kind: str) -> list[dict[str, Any]]:
    with engine.ledger.read() as conn:
        rows = conn.execute(sa.select(records).where((records.c.run_id == run_id) & (records.c.kind == kind))
                            .order_by(records.c.seq))
        return [{"actor": r.actor, "step": r.step_id, **json.loads(r.data)} for r in rows]


def pages(engine: Engine, run_id: str) -> list[tuple[str, str, list[str]]]:
    with engine.ledger.read() as conn:
        return [(r.kind, r.step_id, json.loads(r.targets)) for r in conn.execute(
            sa.select(outbox).where(outbox.c.run_id == run_id).order_by(outbox.c.id))]


def local(instant: Any) -> str:
    value = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    return value.astimezone(SH).strftime("%a %Y-%m-%d %H:%M")


def test_a_48h_creative_refresh_on_business_time_started_friday_1700_is_due_the_wednesday_after(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    friday = sh(2026, 3, 6, 17)  # a Friday at closing, no holiday near
    engine = engine_at(library, tmp_path, friday, monkeypatch)
    run = engine.start("t-biz", initiator="zhang-min")
    view = engine.view(run.run_id)
    due = view.steps["refresh"]["due_at"].astimezone(SH)
    # the words: due the Wednesday after (the clock starts Monday 09:00; two working days later)
    assert (due.strftime("%A"), due.date() - friday.astimezone(SH).date()) == ("Wednesday", timedelta(days=5))
    assert local(due) == "Wed 2026-03-11 09:00"
    assert local(view.run["deadline_at"]) == "Mon 2026-03-16 09:00"  # 5d: a working week from Monday 09:00
    [assigned] = kinds(engine, run.run_id, "step_assigned")
    assert assigned["calendar"] == "cn-office"
    assert local(assigned["wall_due_at"]) == "Sun 2026-03-08 17:00"  # what wall time would have said
    service = TimerService(engine)
    assert local(service.next_instant()) == "Tue 2026-03-10 09:00"  # the 50% reminder: one working day
    service.advance_to(sh(2026, 3, 11, 8, 59))
    assert [e["level"] for e in kinds(engine, run.run_id, "escalation")] == ["1"]
    assert kinds(engine, run.run_id, "step_overdue") == []
    service.advance_to(sh(2026, 3, 11, 9, 0))
    assert [local(r["due_at"]) for r in kinds(engine, run.run_id, "step_overdue")] == ["Wed 2026-03-11 09:00"]


def test_the_spring_festival_and_its_make_up_saturday_count_as_china_says(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026: Sat 14 Feb is a working day (the package's make-up day), 15 Feb-23 Feb are off
    engine = engine_at(library, tmp_path, sh(2026, 2, 13, 17), monkeypatch)
    run = engine.start("t-biz", initiator="zhang-min")
    view = engine.view(run.run_id)
    # the clock starts on the make-up Saturday at 09:00: its one working day, then Tuesday 24th after the
    # holiday (without the make-up day it would start on Tuesday 24th and be due Thursday 26th)
    assert local(view.steps["refresh"]["due_at"]) == "Wed 2026-02-25 09:00"
    ladder = TimerService(engine).next_instant()
    assert local(ladder) == "Tue 2026-02-24 09:00"  # 50%: one working day, the Saturday's
    office = library.site.calendars["cn-office"]
    assert local(office.add(sh(2026, 2, 13, 16), timedelta(days=1))) == "Sat 2026-02-14 16:00"  # a working Saturday


def test_a_make_up_day_written_by_hand_counts_as_a_working_day() -> None:
    office = {"timezone": "Asia/Shanghai", "holidays": {"country": "CN"},
              "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), ["09:00-12:00", "13:00-18:00"])}
    calendar = Calendar.model_validate(office)
    by_hand = Calendar.model_validate({**office, "working_days": ["2027-02-20"]})
    friday = sh(2027, 2, 19, 17)  # the package knows no 2027 make-up days yet
    assert local(calendar.add(friday, timedelta(days=1))) == "Mon 2027-02-22 17:00"
    assert local(by_hand.add(friday, timedelta(days=1))) == "Sat 2027-02-20 17:00"
    assert local(calendar.add(friday, timedelta(hours=4))) == "Mon 2027-02-22 12:00"  # 1h Friday, 3h Monday
    assert local(calendar.add(sh(2027, 2, 5, 10), timedelta(hours=2))) == "Thu 2027-02-11 11:00"  # New Year off


def test_a_compressed_run_counts_the_same_calendar_faster(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = sh(2026, 3, 6, 17)
    engine = engine_at(library, tmp_path, start, monkeypatch)
    run = engine.start("t-biz", initiator="zhang-min", speed=3600)
    view = engine.view(run.run_id)
    # Friday 17:00 to Wednesday 09:00 is 112 hours of the run's SOP clock: 112 seconds at 3600×
    assert view.steps["refresh"]["due_at"] - start == timedelta(seconds=112)
    assert TimerService(engine).next_instant() - start == timedelta(seconds=88)  # Tuesday 09:00


def test_a_run_at_top_speed_open_for_a_month_has_its_next_due_capped_like_any_other_instant(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = sh(2026, 3, 6, 17)
    engine = engine_at(library, tmp_path, start, monkeypatch)
    run = engine.start("t-biz", initiator="zhang-min", speed=SPEED_MAX)
    # a month of wall time at ×100,000 is some 8,500 years of the run's SOP clock: past the year 9999, where the
    # calendar's arithmetic overflowed and the report was a traceback (a 500 on the API)
    TimerService(engine).advance_to(start + timedelta(days=31))  # its reminders and deadlines fire on the way
    engine.report(run.run_id, "refresh", HumanReport(actor="liu-yang", values={}))
    view = engine.view(run.run_id)
    assert view.state("quick") == "active" and view.steps["quick"]["due_at"] == LATEST  # never fires, as any such
    assert TimerService(engine).next_instant() == LATEST
    office = library.site.calendars["cn-office"]
    assert instant_after(datetime(9998, 12, 30, tzinfo=UTC), timedelta(days=366), calendar=office) == LATEST


def test_a_hold_stops_the_reminders_and_moves_the_due_instant_by_the_working_time_held(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_at(library, tmp_path, sh(2026, 3, 9, 10), monkeypatch)  # Monday 10:00
    run = engine.start("t-biz", initiator="zhang-min")
    engine.report(run.run_id, "refresh", HumanReport(actor="liu-yang", values={}))
    view = engine.view(run.run_id)
    assert local(view.steps["quick"]["due_at"]) == "Mon 2026-03-09 15:00"  # 4 working hours, lunch outside
    service = TimerService(engine)
    service.advance_to(sh(2026, 3, 9, 11))
    engine.hold(run.run_id, "quick", Actor("liu-yang", via="cli"), "platform_reply", "asked Douyin support")
    assert engine.view(run.run_id).steps["quick"]["held_at"] == sh(2026, 3, 9, 11)
    service.advance_to(sh(2026, 3, 9, 14, 30))  # the 50% reminder (12:00) and the due (15:00) would be past
    assert kinds(engine, run.run_id, "escalation") == []
    assert not [p for p in pages(engine, run.run_id) if p[0] in ("reminder", "overdue", "escalated")]
    due = engine.release(run.run_id, "quick", Actor("liu-yang", via="web"), "they answered")
    # held 11:00-14:30: 2h30 of working time (12:00-13:00 is lunch); 15:00 + 2h30 working: 2h to the
    # 17:00 closing, 30 min on Tuesday
    assert local(due) == "Tue 2026-03-10 09:30"
    [held] = kinds(engine, run.run_id, "step_held")
    [released] = kinds(engine, run.run_id, "step_released")
    assert (held["actor"], held["via"], held["reason"]) == ("liu-yang", "cli", "platform_reply")
    assert (released["actor"], released["via"], released["ended"]) == ("liu-yang", "web", "released")
    assert released["held_business_s"] == 2.5 * 3600 and released["held_s"] == 3.5 * 3600
    service.advance_to(sh(2026, 3, 9, 15, 29))
    assert kinds(engine, run.run_id, "escalation") == []
    service.advance_to(sh(2026, 3, 9, 15, 30))  # the reminder, moved from 12:00 by the same 2h30
    assert [e["level"] for e in kinds(engine, run.run_id, "escalation")] == ["1"]


def test_a_wall_time_hold_moves_the_due_by_the_time_held_and_refuses_what_is_not_declared(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime(2026, 3, 7, 3, tzinfo=UTC)  # a Saturday: wall time does not care
    engine = engine_at(library, tmp_path, start, monkeypatch)
    run = engine.start("t-wall-hold", initiator="zhang-min")
    with pytest.raises(InputRefused, match="`platform_reply` is not a reason to hold `answer`: it may wait for customer"):
        engine.hold(run.run_id, "answer", "liu-yang", "platform_reply")
    with pytest.raises(InputRefused, match="he-xin may not put on hold step `answer`"):
        engine.hold(run.run_id, "answer", "he-xin", "customer")
    with pytest.raises(StepNotActive, match="not on hold"):
        engine.release(run.run_id, "answer", "liu-yang")
    engine.hold(run.run_id, "answer", "li-wei", "customer")  # an operator
    TimerService(engine).advance_to(start + timedelta(minutes=40))
    due = engine.release(run.run_id, "answer", "liu-yang")
    assert due == start + timedelta(hours=2, minutes=40)


def test_a_hold_past_its_maximum_ends_and_escalates(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_at(library, tmp_path, sh(2026, 3, 9, 10), monkeypatch)
    run = engine.start("t-biz", initiator="zhang-min")
    max_at = engine.hold(run.run_id, "refresh", "liu-yang", "customer")
    assert local(max_at) == "Mon 2026-03-09 15:00"  # max_hold 4h of working time
    service = TimerService(engine)
    service.advance_to(sh(2026, 3, 9, 14, 59))
    assert kinds(engine, run.run_id, "step_released") == []
    service.advance_to(sh(2026, 3, 9, 15, 0))
    [expired] = kinds(engine, run.run_id, "step_released")
    assert expired["ended"] == "expired" and expired["actor"] is None
    assert ("escalated", "refresh", ["lead", "owner"]) in pages(engine, run.run_id)
    view = engine.view(run.run_id)
    assert view.steps["refresh"]["held_at"] is None
    assert local(view.steps["refresh"]["due_at"]) == "Wed 2026-03-11 15:00"  # Wed 10:00 + 4 working hours
    with pytest.raises(StepNotActive, match="not on hold"):
        engine.release(run.run_id, "refresh", "liu-yang")


def test_sop_audit_report_shows_time_on_hold_and_the_verdicts_both_ways(
        library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.audit import Audit
    from flows.cli import app

    engine = engine_at(library, tmp_path, sh(2026, 3, 9, 10), monkeypatch)  # Monday 10:00
    run = engine.start("t-biz", initiator="zhang-min")
    engine.report(run.run_id, "refresh", HumanReport(actor="liu-yang", values={}))
    service = TimerService(engine)
    service.advance_to(sh(2026, 3, 9, 11))
    engine.hold(run.run_id, "quick", "liu-yang", "customer")
    service.advance_to(sh(2026, 3, 9, 14, 30))
    engine.release(run.run_id, "quick", "liu-yang")  # due 15:00 → Tue 09:30 (2h30 of working time held)
    service.advance_to(sh(2026, 3, 9, 16))
    engine.report(run.run_id, "quick", HumanReport(actor="liu-yang", values={}))

    report, _ = Audit(engine.ledger).report(sop="t-biz")
    o = report.overall
    assert (o.late_steps, o.late_steps_counting_holds, o.late_steps_wall) == (0, 1, 1)
    assert (o.holds, o.held_s) == (1, 3.5 * 3600)
    assert (o.met, o.met_wall, o.on_time_wall_pct) == (1, 1, 100.0)

    from flows.cli.common import console

    monkeypatch.setenv("SOP_HOME", str(library.root))
    monkeypatch.setenv("SOP_DATABASE_URL", str(engine.ledger.engine.url))
    # a wide terminal, whatever this session's (the shared console took its width when first imported)
    monkeypatch.setattr(console, "_width", 200)
    out = CliRunner().invoke(app, ["audit", "report", "--sop", "t-biz", "--since", "2026-03-01"])
    assert out.exit_code == 0, out.output
    assert "on hold 3h30m in 1 hold(s)" in out.output
    assert "late steps 0 as the clock ran, 1 counting hold time, 1 on wall time" in out.output
