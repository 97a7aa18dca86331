"""A writer waits for another process's write transaction, then goes on; it gives up only after WRITE_WAIT_S."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import flows.ledger
from flows.ledger import Ledger


def hold_the_lock(db: Path, seconds: float, held: threading.Event) -> threading.Thread:
    """Another writer (a plain sqlite3 connection, as another process has) holding the write lock for ``seconds``."""

    def run() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO pagers (name, pid, started_at, beat_at) VALUES ('other', 1, '2026-01-01', '2026-01-01')")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_writer_waits_for_the_other_writer_and_then_writes(ledger: Ledger, tmp_path: Path) -> None:
    held = threading.Event()
    other = hold_the_lock(tmp_path / "ledger.db", 0.3, held)
    held.wait(5)
    started = time.monotonic()
    with ledger.transaction() as tx:
        waited = time.monotonic() - started
        tx.append("after_the_other", "r1")
        names = tx.conn.execute(sa.text("SELECT name FROM pagers")).scalars().all()
    other.join()
    assert waited >= 0.2  # it did wait for the lock…
    assert names == ["other"]  # …and saw the other writer's commit


def test_a_writer_gives_up_when_the_lock_is_held_too_long(ledger: Ledger, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flows.ledger, "WRITE_WAIT_S", 0.2)
    held = threading.Event()
    other = hold_the_lock(tmp_path / "ledger.db", 1.0, held)
    held.wait(5)
    with pytest.raises(sa.exc.OperationalError, match="locked"), ledger.transaction() as tx:
        tx.append("never", "r1")
    other.join()
    with ledger.transaction() as tx:  # the lock free again: writing works
        tx.append("later", "r1")
    with ledger.read() as conn:
        assert conn.execute(sa.text("SELECT kind FROM records")).scalars().all() == ["later"]
