"""Rows inserted with the transaction's end (``Tx.defer``): on PostgreSQL with its COMMIT, in one round trip, three
rows or more as one JSON parameter (``pgdriver``); on SQLite, and in a batch, at once. The same rows either way, all
or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from flows.ledger import Ledger, Tx, utc
from flows.ledger.schema import deliveries, metric_samples, records

AT = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))  # 01:30:15.123456 UTC
TEXTS = ["plain", "崩溃 😱 crisis", 'quote " and \\ backslash', "line\nbreak\ttab", "", "{\"looks\": [\"json\"]}"]


def delivery(n: int) -> dict[str, Any]:
    """A deliveries row of every column type: times (a zone other than UTC, microseconds), texts, a boolean, a NULL,
    a wide integer."""
    return {"run_id": f"run-{n}", "step_id": None if n % 2 else f"step-{n}", "at": AT + timedelta(microseconds=n),
            "kind": "assigned", "recipient": TEXTS[n % len(TEXTS)], "destination": f"inbox://{n}", "ok": n % 3 == 0,
            "error": TEXTS[(n + 1) % len(TEXTS)] if n % 3 else None, "attempts": n + 1, "latency_ms": n * 7,
            "page": 2**40 + n, "lane": n % 4}


def stored(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.read() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(deliveries).order_by(deliveries.c.page))]
    for row in rows:
        row.pop("id")
        row["at"] = utc(row["at"])
    return rows


def count(tx: Tx) -> int:
    return tx.conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()


@pytest.mark.parametrize("n", [2, 3, 12])  # a row at a time below three; one JSON parameter from three
def test_deferred_rows_are_stored_as_they_were_given(ledger: Ledger, n: int) -> None:
    rows = [delivery(k) for k in range(n)]
    with ledger.transaction() as tx:
        tx.defer(deliveries.insert(), rows)
        # PostgreSQL: not sent before the COMMIT (nothing in the transaction may read them); SQLite: at once
        assert count(tx) == (0 if tx.deferred is not None else n)
    assert stored(ledger) == [{**row, "at": row["at"].astimezone(UTC)} for row in rows]


def test_a_value_json_cannot_carry_goes_a_row_at_a_time(ledger: Ledger) -> None:
    rows = [{"metric": "errors", "series": f"s{k}", "labels": "{}", "at": AT, "value": value, "received_at": AT}
            for k, value in enumerate([1.5, float("inf"), float("-inf")])]
    with ledger.transaction() as tx:
        tx.defer(metric_samples.insert(), rows)
    with ledger.read() as conn:
        assert conn.execute(sa.select(metric_samples.c.value).order_by(metric_samples.c.id)).scalars().all() == [
            1.5, float("inf"), float("-inf")]


def test_a_deferred_insert_that_fails_takes_its_whole_transaction_with_it(ledger: Ledger) -> None:
    first = [{"id": 7, **delivery(k)} for k in range(3)]  # the same id three times
    with pytest.raises(sa.exc.IntegrityError), ledger.transaction() as tx:
        tx.append("note", "run-0", actor="li-wei", text="written before the failing insert")
        tx.defer(deliveries.insert(), first)
    with ledger.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one() == 0
    assert stored(ledger) == []

    with ledger.transaction() as tx:  # the ledger's connection is sound: the next transaction writes
        tx.append("note", "run-0", actor="li-wei", text="after")
        tx.defer(deliveries.insert(), [delivery(k) for k in range(3)])
    assert len(stored(ledger)) == 3


def test_in_a_batch_the_next_call_reads_what_one_deferred(ledger: Ledger) -> None:
    with ledger.batch():
        with ledger.transaction() as tx:
            tx.defer(deliveries.insert(), [delivery(k) for k in range(4)])
        with ledger.transaction() as tx:
            assert count(tx) == 4
    assert len(stored(ledger)) == 4
