"""Writers that append without holding a run (a pager's record of delivered pages: ``transaction(head=True)``): on
PostgreSQL the lane's head comes with the ``BEGIN``, read once the lane's lock is held. Many of them at once, all
preferring one lane, take turns or move to another lane, and every record chains after the one before it."""

from __future__ import annotations

import threading

import pytest

from flows.audit.verify import verify_chain
from flows.ledger import Ledger

WRITERS = 6
EACH = 15


def test_writers_sharing_a_lane_each_chain_after_the_last_record(ledger: Ledger,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flows.ledger._preferred_lane", lambda: 3)  # every thread's first choice: one lane
    failed: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def write(n: int) -> None:
        try:
            start.wait(10)
            for k in range(EACH):
                with ledger.transaction(per_run=True, head=True) as tx:
                    tx.append("notification", f"run-{n}", None, actor=None, notification="assigned", k=k)
                    tx.append("notification", f"run-{n}", None, actor=None, notification="digest", k=k)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread's number
            failed.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert failed == []
    with ledger.read() as conn:
        written = conn.exec_driver_sql("SELECT count(*) FROM records WHERE kind = 'notification'").scalar_one()
        assert verify_chain(conn).ok
    assert written == WRITERS * EACH * 2


def test_the_head_read_with_begin_is_the_lanes_last_record(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """One writer after another on the same lane: the second chains to the first's last record, not to the lane's
    head before it (nor to the genesis)."""
    monkeypatch.setattr("flows.ledger._preferred_lane", lambda: 5)
    with ledger.transaction(per_run=True, head=True) as tx:
        first = tx.append("notification", "run-1", None, actor=None, notification="assigned")
        tx.append("notification", "run-1", None, actor=None, notification="reminder")
    with ledger.transaction(per_run=True, head=True) as tx:
        second = tx.append("notification", "run-2", None, actor=None, notification="assigned")
    with ledger.read() as conn:
        rows = {seq: (chain, pos, prev, digest) for seq, chain, pos, prev, digest in conn.exec_driver_sql(
            "SELECT seq, chain, pos, prev_hash, hash FROM records ORDER BY chain, pos")}
        assert verify_chain(conn).ok
    chain, pos, _, _ = rows[second]
    before = next(row for row in rows.values() if row[0] == chain and row[1] == pos - 1)
    assert rows[first][0] == chain and pos == 3
    assert rows[second][2] == before[3]
