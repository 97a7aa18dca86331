"""The hot statements straight to SQLite's driver (``Tx.execute``/``executemany``/``first``): the rows
they write are the rows SQLAlchemy writes for the same statement, byte for byte, so readers
(the engine's views, the audit, ``verify``) cannot tell which path wrote them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.clock import ManualClock
from flows.engine.store import _RUN_UPDATE, _STEP_UPDATE, _TIMER_ARMED, _TIMER_INSERT
from flows.ledger import Ledger
from flows.ledger.schema import runs, sop_versions, steps, timers

pytestmark = pytest.mark.sqlite_only("SQLite's own driver path (flows/ledger/driver.py); PostgreSQL has none")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fresh(path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}", clock=ManualClock(T0))
    ledger.migrate()
    with ledger.transaction() as tx:
        tx.conn.execute(sop_versions.insert(), {"hash": "h", "sop_id": "s", "version": "1", "text": "x", "first_seen": T0})
        for run_id in ("r1", "r2"):
            tx.conn.execute(runs.insert(), {
                "id": run_id, "sop_id": "s", "sop_hash": "h", "title": "t", "sop_class": "routine", "priority": 3,
                "status": "running", "inputs": "{}", "speed": 1.0, "started_at": T0, "repeats": 0})
            tx.conn.execute(steps.insert(), {"run_id": run_id, "step_id": "ask", "kind": "human", "state": "pending"})
    return ledger


def stored(ledger: Ledger) -> list[list[tuple[Any, ...]]]:
    """Every row of the tables written below, as SQLite holds it (values and their storage types)."""
    out = []
    with ledger.read() as conn:
        for table, order in (("runs", "id"), ("steps", "run_id"), ("timers", "id")):
            columns = [c["name"] for c in sa.inspect(conn).get_columns(table)]
            listing = ", ".join(f"{c}, typeof({c})" for c in columns)
            out.append([tuple(r) for r in conn.exec_driver_sql(f"SELECT {listing} FROM {table} ORDER BY {order}")])
    return out


INSTANTS = [T0, T0 + timedelta(microseconds=7), T0.astimezone(timezone(timedelta(hours=8))).replace(microsecond=120)]


def write(ledger: Ledger, driver: bool) -> None:
    with ledger.transaction() as tx:
        if not driver:
            tx.driver = None  # SQLAlchemy's own execution, as on PostgreSQL
        for i, at in enumerate(INSTANTS):
            run = "r1" if i % 2 == 0 else "r2"
            tx.execute(_RUN_UPDATE, {"_run": run, "repeats": i + 1, "last_seen_at": at, "nudge": i == 1})
            tx.execute(_STEP_UPDATE, {"_run": run, "_step": "ask", "state": "active", "ready_at": at, "due_at": None,
                                      "deadline_met": i == 2, "result": '{"a":"\u00e9"}'})
        tx.executemany(_TIMER_INSERT, [
            {"run_id": "r1", "step_id": "ask", "kind": "ladder", "level": str(i), "due_at": at, "armed_at": T0,
             "cancelled_at": None} for i, at in enumerate(INSTANTS)])
        tx.execute(_TIMER_INSERT, {"run_id": "r2", "step_id": "", "kind": "run_deadline", "level": "", "due_at": T0,
                                   "armed_at": INSTANTS[1], "cancelled_at": INSTANTS[2]})


def test_the_driver_writes_what_sqlalchemy_writes(tmp_path: Path) -> None:
    by_driver, by_sqlalchemy = fresh(tmp_path / "driver.db"), fresh(tmp_path / "sqlalchemy.db")
    write(by_driver, driver=True)
    write(by_sqlalchemy, driver=False)
    assert stored(by_driver) == stored(by_sqlalchemy)
    with by_driver.read() as conn:  # and SQLAlchemy reads the driver's times back as the instants written, in UTC
        due = [r.due_at for r in conn.execute(sa.select(timers.c.due_at).order_by(timers.c.id))]
    assert due[:3] == [at.astimezone(UTC).replace(tzinfo=None) for at in INSTANTS]


def test_first_finds_a_row_with_its_values_or_none(tmp_path: Path) -> None:
    ledger = fresh(tmp_path / "l.db")
    write(ledger, driver=True)
    with ledger.transaction() as tx:
        armed = tx.first(_TIMER_ARMED, {"_run": "r1", "_step": "ask", "_kind": "ladder", "_level": "1"})
        missing = tx.first(_TIMER_ARMED, {"_run": "r2", "_step": "ask", "_kind": "ladder", "_level": "1"})
        tx.driver = None
        same = tx.first(_TIMER_ARMED, {"_run": "r1", "_step": "ask", "_kind": "ladder", "_level": "1"})
    assert armed == same == (2,)
    assert missing is None


def test_both_paths_raise_sqlalchemys_error_for_a_broken_constraint(tmp_path: Path) -> None:
    """A caller catching a constraint violation need not know which path ran its statement."""
    ledger = fresh(tmp_path / "l.db")
    timer = {"run_id": "r1", "step_id": "ask", "kind": "ladder", "level": "1", "due_at": T0, "armed_at": T0,
             "cancelled_at": None}
    for driver in (True, False):
        with pytest.raises(sa.exc.IntegrityError, match="UNIQUE"), ledger.transaction() as tx:
            if not driver:
                tx.driver = None
            tx.execute(_TIMER_INSERT, timer)
            tx.execute(_TIMER_INSERT, timer)  # the same level twice (uq_timer_level)
        with pytest.raises(sa.exc.IntegrityError), ledger.transaction() as tx:
            if not driver:
                tx.driver = None
            tx.executemany(_TIMER_INSERT, [timer, timer])
