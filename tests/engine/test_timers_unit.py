"""Timer fencing and the watchdog, without Prefect (a ledger in a temp folder)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from flows.engine.timers import TimerService
from flows.ledger.schema import timers
from tests.conftest import TestDatabase


@pytest.fixture
def local_engine(database: TestDatabase, repo_root, tmp_path, monkeypatch):
    from flows import runtime
    from tests.engine.conftest import make_project

    root = make_project(repo_root, tmp_path / "site")
    monkeypatch.setenv("SOP_DATABASE_URL", database.url_at(root / "var" / "ledger.db"))
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    engine = runtime.engine(root, prefect=False)
    yield engine
    engine.pager.close()


def test_the_watchdog_flags_a_timer_left_unfired_past_its_instant(local_engine):
    run = local_engine.start("t-ladder", initiator="li-wei", speed=1)
    with local_engine.ledger.transaction() as tx:  # as if the service had been stuck for a minute
        tx.conn.execute(timers.update().where(timers.c.run_id == run.run_id).values(
            due_at=local_engine.clock.now() - timedelta(minutes=1)))
    service = TimerService(local_engine)
    flagged = service.watchdog()
    assert len(flagged) == 4  # the due timer, the first ladder level, the run deadline, the first status ask
    assert service.watchdog() == []  # flagged once each
    fired = service.fire_due()
    assert {f.kind for f in fired} == {"due", "ladder", "run_deadline", "cadence"}
    assert all(f.late_ms >= 59_000 for f in fired)


def test_a_timer_fires_once_and_a_finished_step_disarms_its_timers(local_engine):
    from flows.language.steps.human import HumanReport

    run = local_engine.start("t-ladder", initiator="li-wei", speed=1)
    service = TimerService(local_engine)
    with local_engine.ledger.read() as conn:
        timer_id = conn.execute(sa.select(timers.c.id).where((timers.c.run_id == run.run_id)
                                                             & (timers.c.kind == "ladder"))).scalar_one()
    assert service.fire(timer_id) is not None
    assert service.fire(timer_id) is None  # claimed already: nothing happens twice
    local_engine.report(run.run_id, "respond", HumanReport(actor="zhao-lei", values={"answer": "ok"}))
    with local_engine.ledger.read() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(timers).where(
            (timers.c.run_id == run.run_id) & (timers.c.step_id == "respond") & timers.c.fired_at.is_(None)
            & timers.c.cancelled_at.is_(None))).scalar_one()
    assert left == 0


def test_a_run_past_its_deadline_tells_the_owner_which_steps_are_open(local_engine):
    from notifications import read_inbox

    run = local_engine.start("t-ladder", initiator="li-wei", speed=1)
    with local_engine.ledger.transaction() as tx:  # the run's 1h deadline passed a minute ago
        tx.conn.execute(timers.update().where((timers.c.run_id == run.run_id) & (timers.c.kind == "run_deadline"))
                        .values(due_at=local_engine.clock.now() - timedelta(minutes=1)))
    fired = TimerService(local_engine).fire_due()
    assert [f.kind for f in fired] == ["run_deadline"]
    local_engine.pager.close()  # wait for the delivery

    [page] = [m for m in read_inbox("tom-becker") if "deadline passed" in m["title"]]  # sre-lead's primary
    assert page["title"] == f"[P2] Run deadline passed: Ladder timing probe, run {run.run_id}"
    assert "| Respond to the probe (`respond`) | active |" in page["body"]
    with local_engine.ledger.read() as conn:
        from flows.ledger.schema import deliveries

        kinds = conn.execute(sa.select(deliveries.c.kind, deliveries.c.ok).where(
            deliveries.c.run_id == run.run_id)).all()
    assert ("run_overdue", True) in kinds


def _until_a_writer_waits_for_a_lock(ledger) -> None:
    """PostgreSQL: until another session of this database waits for a row or transaction lock (pg_stat_activity).
    SQLite has one writer at a time (nothing to deadlock on, nothing to see): a moment for the other to get there."""
    import time

    if ledger.is_sqlite:
        time.sleep(0.2)
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with ledger.read() as conn:
            if conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND wait_event_type = 'Lock'")).scalar_one():
                return
        time.sleep(0.01)
    raise AssertionError("no writer came to wait for a lock within 20 s")


def test_a_timer_due_while_a_change_holds_its_run_waits_for_the_change_and_nothing_deadlocks(local_engine, database):
    """A change holds its run, then cancels the run's timers (a step ends); a timer of that run falls due meanwhile.
    The timer service waits for the run before it claims the timer: on PostgreSQL it used to claim the timer's row
    first, then wait for the run, while the change waited for that row: a deadlock that failed the change (and
    the flow run it was in)."""
    import threading

    run = local_engine.start("t-ladder", initiator="li-wei", speed=1)
    with local_engine.ledger.read() as conn:
        timer_id = conn.execute(sa.select(timers.c.id).where((timers.c.run_id == run.run_id)
                                                             & (timers.c.kind == "ladder"))).scalar_one()
    service = TimerService(local_engine)
    holding, errors, fired = threading.Event(), [], []

    def fire() -> None:
        holding.wait(10)
        try:
            fired.append(service.fire(timer_id))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    firing = threading.Thread(target=fire)
    firing.start()
    try:
        with local_engine.transaction() as t:
            view = t.change(run.run_id).view  # the run, held
            holding.set()
            _until_a_writer_waits_for_a_lock(local_engine.ledger)  # the timer service, at its claim or the run
            t.store.cancel_timers(view, None)  # the run's timers: the rows the service may have locked
    except Exception as exc:  # noqa: BLE001 - the test reports it
        errors.append(exc)
    firing.join(30)
    assert not errors, errors
    assert fired == [None]  # the change cancelled it first: the service found nothing to fire
