"""Status cadences on compressed time: the P1 owner is asked for an update every 30 minutes of SOP time;
a missed one escalates to the owner role's lead; an update keeps the rhythm; a snooze pushes the next ask."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from flows.engine.inputs import InputRefused
from flows.engine.timers import TimerService
from flows.ledger import utc
from flows.ledger.schema import timers
from notifications import read_inbox
from tests.engine.conftest import records, wait_for
from tests.engine.test_timers_unit import local_engine  # noqa: F401  (an engine on a project copy, no Prefect)

SPEED = 3600.0  # 30 minutes of playbook in half a second


def armed(engine: Any, run_id: str, kind: str) -> list[Any]:
    with engine.ledger.read() as conn:
        return list(conn.execute(sa.select(timers).where(
            (timers.c.run_id == run_id) & (timers.c.kind == kind) & timers.c.fired_at.is_(None)
            & timers.c.cancelled_at.is_(None))))


def come_due(engine: Any, run_id: str, kind: str) -> list[Any]:
    """Time passes until the run's armed timers of ``kind`` are due, and the timer service fires them.

    Only them: at ×3600 the run's step ladders come due by the wall clock too (a first level in 0.125 s),
    and on a busy machine they have before this is called.
    """
    due = [timer.id for timer in armed(engine, run_id, kind)]
    with engine.ledger.transaction() as tx:
        tx.conn.execute(timers.update().where(timers.c.id.in_(due))
                        .values(due_at=engine.clock.now() - timedelta(milliseconds=1)))
    service = TimerService(engine)
    return [fired for fired in map(service.fire, due) if fired is not None]


def inbox(engine: Any, person: str) -> list[dict[str, Any]]:
    return read_inbox(person, engine.library.root / "var" / "inbox")


def test_a_p1_owner_misses_an_update_is_escalated_then_posts_and_snoozes(local_engine: Any) -> None:  # noqa: F811
    engine = local_engine
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                          speed=SPEED).run_id
    [first] = armed(engine, run_id, "cadence")  # complaint: every 30m from settings.cadences
    started = engine.view(run_id).run["started_at"]
    assert utc(first.due_at) - started == timedelta(seconds=0.5)
    owner_seen, lead_seen = len(inbox(engine, "chen-jie")), len(inbox(engine, "li-wei"))

    # the cadence fired (on a slow machine a ladder timer of the run may come due at 3600x in the same pass)
    assert "cadence" in {f.kind for f in come_due(engine, run_id, "cadence")}
    asked = wait_for(lambda: [m for m in inbox(engine, "chen-jie")[owner_seen:]
                              if m["title"].startswith("[P1] Status update due")], 10, "the owner's ask")
    assert f"sop update {run_id} --as chen-jie" in asked[0]["body"]
    assert "What is the sentiment doing" in asked[0]["body"]  # the class default's message
    assert [t.level for t in armed(engine, run_id, "cadence")] == ["2"]  # the next period is armed

    come_due(engine, run_id, "cadence_check")  # its grace is over and nobody posted: missed
    assert [r["data"]["period"] for r in records(engine, run_id, "status_missed")] == [1]
    missed = wait_for(lambda: [m for m in inbox(engine, "li-wei")[lead_seen:]
                               if m["title"].startswith("[P1] Missed status update")], 10,
                      "the lead's page (pr-lead's lead is ops-director, primary li-wei)")
    assert missed

    engine.post_update(run_id, "chen-jie", "statement drafted, mentions flat")
    update = records(engine, run_id, "status_update")[-1]
    assert update["actor"] == "chen-jie" and update["data"]["text"] == "statement drafted, mentions flat"
    with pytest.raises(InputRefused, match="a snooze is up to 30m"):
        engine.snooze(run_id, "chen-jie", timedelta(minutes=45), "at the press call")
    with pytest.raises(InputRefused, match="huang-ting is not of pr-lead"):
        engine.snooze(run_id, "huang-ting", timedelta(minutes=10), "busy")
    before = utc(armed(engine, run_id, "cadence")[0].due_at)
    engine.snooze(run_id, "chen-jie", timedelta(minutes=15), "at the press call")
    after = utc(armed(engine, run_id, "cadence")[0].due_at)
    assert after - before == timedelta(seconds=0.25)  # 15 minutes of SOP time at ×3600
    assert records(engine, run_id, "cadence_snoozed")[-1]["data"]["reason"] == "at the press call"

    come_due(engine, run_id, "cadence")  # period 2 is asked...
    engine.post_update(run_id, "wang-fang", "second statement out")
    come_due(engine, run_id, "cadence_check")  # ...and answered: not missed
    assert len(records(engine, run_id, "status_missed")) == 1
    from flows.audit import Audit

    report, _ = Audit(engine.ledger).report(sop="crisis-pr")
    assert (report.overall.status_asked, report.overall.status_updates, report.overall.status_missed) == (2, 2, 1)


def test_an_update_needs_text_and_a_person_and_an_open_run(local_engine: Any) -> None:  # noqa: F811
    engine = local_engine
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei").run_id
    with pytest.raises(InputRefused, match="needs some text"):
        engine.post_update(run_id, "chen-jie", "  ")
    with pytest.raises(InputRefused, match="not a person in config"):
        engine.post_update(run_id, "mallory", "hi")
    engine.cancel(run_id, "drill over", "li-wei")
    assert armed(engine, run_id, "cadence") == []  # a closed run asks nothing more
    from flows.engine.inputs import StepNotActive

    with pytest.raises(StepNotActive, match="takes no status updates"):
        engine.post_update(run_id, "chen-jie", "late")


def test_a_forgotten_run_stops_asking_after_three_missed_updates_and_an_update_starts_it_again(
        local_engine: Any) -> None:  # noqa: F811
    """Nobody answers: three asks missed in a row, then no more asks (nor their escalations) paging the lead for ever;
    the next update starts the rhythm again."""
    engine = local_engine
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei",
                          speed=SPEED).run_id
    for _ in range(3):
        come_due(engine, run_id, "cadence")
        come_due(engine, run_id, "cadence_check")
    assert [r["data"]["period"] for r in records(engine, run_id, "status_missed")] == [1, 2, 3]
    [stopped] = records(engine, run_id, "status_asks_stopped")
    assert stopped["data"]["missed"] == 3
    come_due(engine, run_id, "cadence")  # period 4 comes: asked of nobody, nobody paged
    assert len(records(engine, run_id, "status_asked")) == 3 and armed(engine, run_id, "cadence_check") == []
    from flows.audit import Audit

    texts = [e["text"] for e in Audit(engine.ledger).show(run_id)["timeline"]]
    assert any("status asks stopped after 3 missed updates in a row" in t for t in texts)

    engine.post_update(run_id, "chen-jie", "back on it: statement out at 14:00")
    come_due(engine, run_id, "cadence")  # the next period asks again
    assert [r["data"]["period"] for r in records(engine, run_id, "status_asked")][-1] == 5
    come_due(engine, run_id, "cadence_check")  # the update came in this period: not missed
    time.sleep(0.6)  # a whole period (30m at ×3600) with no update
    come_due(engine, run_id, "cadence")
    come_due(engine, run_id, "cadence_check")  # period 6 missed: one in a row since the update, asks go on
    assert len(records(engine, run_id, "status_missed")) == 4 and len(records(engine, run_id, "status_asks_stopped")) == 1
    assert armed(engine, run_id, "cadence") and records(engine, run_id, "status_asked")[-1]["data"]["period"] == 6


def test_a_posted_update_reaches_those_above_the_owner_not_the_one_who_posted(local_engine: Any) -> None:  # noqa: F811
    """The director's walkthrough: an update was posted and no inbox received its text. It goes where the cadence
    says (`share`; by default to those a missed update escalates to: the owner role's lead)."""
    engine = local_engine
    run_id = engine.start("crisis-pr", {"brand": f"b-{uuid.uuid4().hex[:8]}"}, initiator="li-wei").run_id
    lead_seen, owner_seen = len(inbox(engine, "li-wei")), len(inbox(engine, "chen-jie"))
    engine.post_update(run_id, "chen-jie", "statement drafted,\nmentions flat since 14:00")
    [update] = wait_for(lambda: [m for m in inbox(engine, "li-wei")[lead_seen:]
                                 if m["title"].startswith("[P1] Status update from Chen Jie 陈杰")], 10,
                        "the lead's copy (pr-lead's lead is ops-director, primary li-wei)")
    assert "Crisis PR" in update["title"]
    assert "> statement drafted,\n> mentions flat since 14:00" in update["body"], update["body"]
    engine.pager.close()
    assert not [m for m in inbox(engine, "chen-jie")[owner_seen:] if "Status update from" in m["title"]]
    seen = len(inbox(engine, "li-wei"))
    engine.post_update(run_id, "li-wei", "legal is on it")  # the lead posts: nobody else is to be told, nor she
    engine.pager.close()
    assert not [m for m in inbox(engine, "li-wei")[seen:] if "Status update from" in m["title"]]
