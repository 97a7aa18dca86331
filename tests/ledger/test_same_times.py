"""A moment is stored as the same instant on both databases, whatever zone the caller wrote it in.

Before, SQLite kept an aware time's wall-clock fields and dropped its offset (20:00+08:00 read back as
20:00 UTC, and a record appended at such a time failed its own hash check), while PostgreSQL read a
naive time in its server's zone (12:00 on a server set to Asia/Shanghai read back as 04:00 UTC).
Both databases are set up here as an office in Shanghai would set up PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from flows.ledger import Ledger, record_hash, utc
from flows.ledger.schema import metric_samples, records
from tests.conftest import TestDatabase

NOON_UTC = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ZONED = NOON_UTC.astimezone(timezone(timedelta(hours=8)))  # 20:00+08:00
NAIVE = NOON_UTC.replace(tzinfo=None)  # taken as UTC: what SQLite reads back and the ledger writes


@pytest.fixture
def shanghai_ledger(database: TestDatabase, database_url: str) -> Iterator[Ledger]:
    """A migrated ledger; on PostgreSQL its database's time zone is Asia/Shanghai (the server's, not ours)."""
    if database.cluster is not None:
        name = database_url.rsplit("/", 1)[1]
        database.cluster.psql(name, f"ALTER DATABASE {name} SET timezone TO 'Asia/Shanghai'")
    ledger = Ledger(database_url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


def stored_at(ledger: Ledger, metric: str) -> datetime:
    with ledger.read() as conn:
        value = conn.execute(sa.select(metric_samples.c.at).where(metric_samples.c.metric == metric)).scalar_one()
    return utc(value)  # type: ignore[return-value]


@pytest.mark.parametrize("at", [ZONED, NAIVE, NOON_UTC], ids=["zoned", "naive", "utc"])
def test_a_time_in_any_zone_is_the_same_instant_on_both(shanghai_ledger: Ledger, at: datetime) -> None:
    sample = {"series": "s", "labels": "{}", "value": 1.0, "at": at, "received_at": at}
    with shanghai_ledger.transaction() as tx:
        tx.execute(metric_samples.insert(), {**sample, "metric": "hot"})  # the fast path on SQLite
        tx.conn.execute(metric_samples.insert(), {**sample, "metric": "plain"})  # SQLAlchemy's own
    assert stored_at(shanghai_ledger, "hot") == NOON_UTC
    assert stored_at(shanghai_ledger, "plain") == NOON_UTC
    with shanghai_ledger.read() as conn:  # and a query by time finds it, asked in any zone
        found = conn.execute(sa.select(sa.func.count()).select_from(metric_samples)
                             .where(metric_samples.c.at == sa.bindparam("at", type_=metric_samples.c.at.type)),
                             {"at": ZONED}).scalar_one()
    assert found == 2


def test_a_record_appended_at_a_zoned_time_keeps_its_hash(shanghai_ledger: Ledger) -> None:
    with shanghai_ledger.transaction() as tx:
        tx.append("run_started", "r1", actor="li-wei", at=ZONED, sop="s")
    with shanghai_ledger.read() as conn:
        row = conn.execute(sa.select(records)).one()
    assert utc(row.at) == NOON_UTC
    assert record_hash(row.prev_hash, row.seq, row.at, row.run_id, row.step_id, row.kind, row.actor,
                       row.data, row.chain, row.pos) == row.hash  # what `sop audit verify` recomputes
