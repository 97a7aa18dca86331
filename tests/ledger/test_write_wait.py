"""A writer waits for another process's write transaction, then goes on; it gives up only after WRITE_WAIT_S."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import flows.ledger
from flows.audit.verify import verify_chain
from flows.ledger import Ledger


def another_writer(url: str, seconds: float, held: threading.Event) -> threading.Thread:
    """Another process's ledger (its own engine and connections) in a write transaction on run r1 for ``seconds``."""

    def run() -> None:
        other = Ledger(url)
        with other.transaction() as tx:
            tx.append("the_other_writer", "r1")
            held.set()
            time.sleep(seconds)
        other.dispose()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_writer_on_the_same_run_waits_for_the_other_and_chains_after_it(ledger: Ledger, database_url: str) -> None:
    """On both databases: two processes' writers to one run take turns: the later one comes after the other in
    the ledger's order (seq), and the chain verifies (each writer's records chained in the lane it held)."""
    held = threading.Event()
    other = another_writer(database_url, 0.3, held)
    assert held.wait(5)
    started = time.monotonic()
    with ledger.transaction() as tx:
        tx.append("after_the_other", "r1")
    waited = time.monotonic() - started
    other.join()
    with ledger.read() as conn:
        rows = conn.execute(sa.text("SELECT seq, kind, prev_hash, hash FROM records ORDER BY seq")).all()
    assert waited >= 0.2  # it did wait for the other writer…
    assert [r.kind for r in rows] == ["the_other_writer", "after_the_other"]  # …came after it…
    with ledger.read() as conn:
        assert verify_chain(conn).ok  # …and the chain is sound


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


@pytest.mark.sqlite_only("SQLite's file lock taken by a plain sqlite3 connection; twin on both databases: "
                         "test_a_writer_on_the_same_run_waits_for_the_other_and_chains_after_it")
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


@pytest.mark.sqlite_only("WRITE_WAIT_S bounds the wait for SQLite's file lock; PostgreSQL writers wait on the server")
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
