"""On call on compressed time: a rotation handing off mid-run, an override winning and expiring.

No Prefect: a real SQLite ledger in the test's folder, the real engine, pager and timer
service, time on a manual clock. sre-oncall rotates weekly in config/roles.yaml (zhao-lei,
kenji-sato, tom-becker; handoff MON 09:00 Asia/Shanghai, 01:00 UTC): the week of Monday
2026-03-02 is zhao-lei's, the week of 2026-03-09 kenji-sato's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.audit.timeline import describe
from flows.clock import ManualClock
from flows.engine import outbox
from flows.engine.oncall import OverrideRefused, add_override
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.ledger.schema import pagers, records
from notifications import read_inbox
from tests.conftest import TestDatabase
from tests.engine.conftest import clocked_engine_of

HANDOFF = datetime(2026, 3, 9, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai: zhao-lei → kenji-sato
START = HANDOFF - timedelta(minutes=30)

# two steps of the rotating role, both reminded every 20 minutes (00:50, 01:10, 01:30 UTC)
PROBE = """\
    id: t-handoff
    title: Handoff probe
    class: outage
    owner: sre-lead
    steps:
      - id: respond
        title: Respond to the probe
        assignee: sre-oncall
        due: 2h
        escalation:
          - every: 20m
            notify: [assignee]
            max: 5
      - id: verify
        title: Verify the fix
        assignee: sre-oncall
        due: 2h
        escalation:
          - every: 20m
            notify: [assignee]
            max: 5
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def engine(database: TestDatabase, repo_root: Path, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"), clock,
                                 {"t-handoff": PROBE})


def reminders(engine: Any, person: str, step_title: str) -> int:
    """How many reminders about the step reached the person's inbox (every page delivered first)."""
    engine.pager.close()
    return sum(1 for m in read_inbox(person, engine.inbox) if "Reminder" in m["title"] and step_title in m["title"])


def step_records(engine: Any, run_id: str, kind: str) -> list[dict[str, Any]]:
    with engine.ledger.read() as conn:
        rows = conn.execute(sa.select(records).where((records.c.run_id == run_id) & (records.c.kind == kind))
                            .order_by(records.c.seq)).all()
    return [{"step": r.step_id, "at": r.at, **json.loads(r.data)} for r in rows]


def test_a_handoff_mid_run_sends_later_reminders_to_the_new_primary_and_a_claimed_step_stays(
        engine: Engine, clock: ManualClock) -> None:
    run = engine.start("t-handoff", {}, initiator="li-wei", speed=1)
    assigned = step_records(engine, run.run_id, "step_assigned")
    assert {(r["person"], r["on_call"]["source"]) for r in assigned} == {("zhao-lei", "rotation")}
    assert "until 2026-03-09 09:00 Asia/Shanghai" in assigned[0]["on_call"]["why"]

    clock.set(START + timedelta(minutes=10))
    engine.claim(run.run_id, "verify", "zhao-lei")  # "I'll take it", before the handoff
    service = TimerService(engine)
    service.advance_to(START + timedelta(minutes=21))  # 00:50: the first reminders, before the handoff
    assert reminders(engine, "zhao-lei", "Respond to the probe") == 1
    assert reminders(engine, "zhao-lei", "Verify the fix") == 1

    service.advance_to(HANDOFF + timedelta(minutes=31))  # 01:10 and 01:30: after the handoff
    assert reminders(engine, "kenji-sato", "Respond to the probe") == 2  # the unclaimed step: the new primary
    assert reminders(engine, "zhao-lei", "Respond to the probe") == 1
    assert reminders(engine, "zhao-lei", "Verify the fix") == 3  # the claimed step stays with its holder
    assert reminders(engine, "kenji-sato", "Verify the fix") == 0

    escalations = [r for r in step_records(engine, run.run_id, "escalation") if r["step"] == "respond"]
    assert [e["on_call"]["sre-oncall"]["primary"] for e in escalations] == ["zhao-lei", "kenji-sato", "kenji-sato"]
    assert "shift 11 (kenji-sato)" in escalations[-1]["on_call"]["sre-oncall"]["why"]
    held = [r for r in step_records(engine, run.run_id, "escalation") if r["step"] == "verify"]
    assert {e["holder"] for e in held} == {"zhao-lei"}
    # what `sop audit show` says of them
    assert describe("escalation", escalations[-1], None).endswith("→ assignee (sre-oncall: kenji-sato by rotation)")
    assert describe("escalation", held[-1], None).endswith("→ assignee (held by zhao-lei)")
    assert "(zhao-lei; rotation: shift 10 (zhao-lei)" in describe("step_assigned", assigned[0], None)
    pages = [r for r in step_records(engine, run.run_id, "notification") if r["step"] == "respond"]
    assert any(d["recipient"] == "kenji-sato" and "shift 11" in d["via"] for p in pages for d in p["results"])


def test_an_override_wins_over_the_rotation_then_expires(engine: Engine, clock: ManualClock) -> None:
    # tom-becker stands in from 00:40 to 01:20 UTC (across the handoff)
    made = add_override(engine.site, engine.ledger, "sre-oncall", "tom-becker", START + timedelta(minutes=10),
                        HANDOFF + timedelta(minutes=20), "zhao-lei's flight is late", Actor("li-wei", via="cli"))
    assert engine.on_call("sre-oncall").primary == "zhao-lei"  # not yet
    run = engine.start("t-handoff", {}, initiator="li-wei", speed=1)
    service = TimerService(engine)
    service.advance_to(START + timedelta(minutes=21))  # 00:50: the override holds
    assert engine.on_call("sre-oncall").source == "override"
    assert reminders(engine, "tom-becker", "Respond to the probe") == 1
    service.advance_to(HANDOFF + timedelta(minutes=11))  # 01:10: still the override, after the handoff
    assert reminders(engine, "tom-becker", "Respond to the probe") == 2
    service.advance_to(HANDOFF + timedelta(minutes=31))  # 01:30: it ended at 01:20, the rotation is back
    assert reminders(engine, "kenji-sato", "Respond to the probe") == 1
    assert reminders(engine, "zhao-lei", "Respond to the probe") == 0

    escalations = [r for r in step_records(engine, run.run_id, "escalation") if r["step"] == "respond"]
    sources = [(e["on_call"]["sre-oncall"]["primary"], e["on_call"]["sre-oncall"]["source"]) for e in escalations]
    assert sources == [("tom-becker", "override"), ("tom-becker", "override"), ("kenji-sato", "rotation")]
    assert escalations[0]["on_call"]["sre-oncall"]["override"] == made.id
    assert "zhao-lei's flight is late" in escalations[0]["on_call"]["sre-oncall"]["why"]
    with engine.ledger.read() as conn:
        recorded = conn.execute(sa.select(records).where(records.c.kind == "oncall_override")).one()
    data = json.loads(recorded.data)
    assert (recorded.actor, data["person"], data["replaces"], data["via"]) == ("li-wei", "tom-becker", "zhao-lei", "cli")


def test_an_override_is_refused_with_a_reason(engine: Engine) -> None:
    actor = Actor("li-wei", via="cli")
    later = START + timedelta(hours=1)
    with pytest.raises(OverrideRefused, match="not a member of `sre-oncall`"):
        add_override(engine.site, engine.ledger, "sre-oncall", "li-wei", START, later, "x", actor)
    with pytest.raises(OverrideRefused, match="must come after --from"):
        add_override(engine.site, engine.ledger, "sre-oncall", "tom-becker", later, START, "x", actor)
    with pytest.raises(OverrideRefused, match="needs a --reason"):
        add_override(engine.site, engine.ledger, "sre-oncall", "tom-becker", START, later, " ", actor)
    with pytest.raises(OverrideRefused, match="not a role"):
        add_override(engine.site, engine.ledger, "sre-on-call", "tom-becker", START, later, "x", actor)


def test_a_page_delivered_after_the_handoff_goes_to_whom_it_was_decided_for(engine: Engine, clock: ManualClock) -> None:
    """A pager process delivers pages a moment after their transition: the people are the transition's."""
    far = datetime.now(UTC) + timedelta(days=1)
    with engine.ledger.transaction() as tx:  # a pager process is alive: pages wait in the outbox for it
        tx.conn.execute(pagers.insert().values(name="other:1", pid=1, started_at=far, beat_at=far))
    engine.start("t-handoff", {}, initiator="li-wei", speed=1)
    TimerService(engine).advance_to(START + timedelta(minutes=21))  # 00:50: reminders decided for zhao-lei
    clock.set(HANDOFF + timedelta(minutes=5))  # delivered only after the handoff
    pages = outbox.claim(engine.ledger, "test:1")
    assert {p.on_call["sre-oncall"]["primary"] for p in pages if p.on_call and "sre-oncall" in p.on_call} == {
        "zhao-lei"}
    engine.pager.render_now(engine, pages)
    assert reminders(engine, "zhao-lei", "Respond to the probe") == 1
    assert reminders(engine, "kenji-sato", "Respond to the probe") == 0
