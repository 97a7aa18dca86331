"""Record seqs and a lane's places go on past 2**31 on both databases (PostgreSQL's writers take seqs from a
sequence, in blocks)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from flows.audit.verify import verify_chain
from flows.ledger import Ledger, record_hash
from flows.ledger.schema import deliveries, records
from tests.conftest import TestDatabase, sql_on

PAST_32_BITS = 2**31 + 9


def test_records_go_on_past_two_to_the_31_and_still_verify(database: TestDatabase, tmp_path: Path) -> None:
    url = database.url_at(tmp_path / "ledger.db")
    ledger = Ledger(url)
    ledger.checkpoint_every = None
    ledger.migrate()
    with ledger.transaction() as tx:
        tx.append("note", "run-a", actor="ana", n=1)
    # two billion seqs later: the writer numbers the next record past 2**31 (SQLite: after the last record, here
    # renumbered with its hash recomputed; PostgreSQL: from the sequence)
    with ledger.read() as conn:
        first = conn.execute(sa.select(records)).one()
    digest = record_hash(first.prev_hash, PAST_32_BITS, first.at, first.run_id, first.step_id, first.kind, first.actor,
                         first.data, first.chain, first.pos)
    renumber = [("UPDATE records SET seq = ?, hash = ? WHERE seq = ?", (PAST_32_BITS, digest, first.seq))]
    if not database.is_sqlite:
        renumber.append(("SELECT setval(pg_get_serial_sequence('records', 'seq'), ?)", (PAST_32_BITS,)))
    sql_on(url, *renumber)

    with ledger.transaction() as tx:
        seq = tx.append("note", "run-a", actor="ana", n=2)
        tx.conn.execute(deliveries.insert().values(run_id="run-a", at=first.at, kind="page", recipient="ana",
                                                   destination="json://x", ok=True, page=seq, lane=0))
    assert seq > PAST_32_BITS
    with ledger.read() as conn:
        assert conn.execute(sa.select(deliveries.c.page)).scalar_one() == seq
        result = verify_chain(conn)
    assert result.ok, result.to_dict()
    # a lane two billion records long: its places fit too
    sql_on(url, ("UPDATE records SET pos = ? WHERE seq = ?", (PAST_32_BITS, seq)))
    with ledger.read() as conn:
        assert conn.execute(sa.select(records.c.pos).where(records.c.seq == seq)).scalar_one() == PAST_32_BITS
    ledger.dispose()
