"""Records held and inserted together (``Tx.held``): the same chain as one insert each, all or nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.clock import ManualClock
from flows.engine.paging import Pager
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger, Tx
from flows.ledger.schema import records
from tests.conftest import TestDatabase

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def ledger_at(url: str) -> Ledger:
    ledger = Ledger(url, clock=ManualClock(T0))
    ledger.migrate()
    return ledger


def chain(ledger: Ledger) -> list[tuple[Any, ...]]:
    with ledger.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(records).order_by(records.c.seq))]


def story(tx: Tx, hold: Callable[[], Any]) -> None:
    """A run's records, some appended one by one, the middle ones under ``hold()``."""
    tx.append("run_started", "r1", actor="ana", sop="s", inputs={"a": 1})
    with hold():
        tx.append("step_assigned", "r1", "ask", assignee="sre-oncall", due_at=T0)
        tx.append("step_ready", "r1", "ping", step_kind="command")
        tx.append_text("notification", "r1", None, None, T0, json.dumps({"notification": "assigned"}))
    tx.append("step_done", "r1", "ask", actor="zhao-lei", result={"ok": True})


def test_held_records_chain_exactly_as_records_inserted_one_by_one(database: TestDatabase, tmp_path: Path) -> None:
    plain, held = ledger_at(database.url_at(tmp_path / "plain.db")), ledger_at(database.url_at(tmp_path / "held.db"))
    for ledger in (plain, held):
        with ledger.transaction() as tx:
            tx.append("genesis_note", actor="setup")
    with plain.transaction() as tx:
        story(tx, contextlib.nullcontext)
    with held.transaction() as tx:
        story(tx, tx.held)

    assert len(chain(held)) == 6
    assert chain(held) == chain(plain)  # seq, at, data, prev_hash and hash alike


def test_nothing_is_in_records_until_the_block_ends(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        with tx.held():
            seq = tx.append("step_ready", "r1", "ping")
            assert tx.conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one() == 0
        # SQLite: inserted as the block ends; PostgreSQL: with the transaction's COMMIT (Tx.defer)
        assert tx.conn.execute(sa.select(records.c.seq)).scalars().all() == ([seq] if tx.deferred is None else [])
    assert [row[0] for row in chain(ledger)] == [seq]


def test_an_exception_inside_writes_nothing_and_the_chain_goes_on_sound(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError, match="boom"), ledger.transaction() as tx:
        tx.append("before", "r1")
        with tx.held():
            tx.append("held", "r1")
            raise RuntimeError("boom")
    assert chain(ledger) == []  # the whole transaction rolled back

    with ledger.transaction() as tx:  # caught inside the transaction: what came before stays, the rest goes on
        tx.append("before", "r1")
        with pytest.raises(RuntimeError), tx.held():
            tx.append("held", "r1")
            raise RuntimeError("boom")
        tx.append("after", "r1")
    with ledger.read() as conn:
        rows = conn.execute(sa.select(records.c.seq, records.c.kind, records.c.pos, records.c.prev_hash,
                                      records.c.hash).order_by(records.c.seq)).all()
    assert [r.kind for r in rows] == ["before", "after"]
    assert rows[1].pos == rows[0].pos + 1  # the held record's place and hash were given back
    assert rows[1].prev_hash == rows[0].hash


def test_sop_audit_verify_passes_on_a_ledger_written_with_held_records(
        repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sop: Any, database_url: str) -> None:
    """New runs and their delivery records are written with held records; the auditor finds the chain intact."""
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    library = load_library(repo_root)
    ledger = Ledger(database_url)
    ledger.migrate()
    engine = Engine(library, ledger, pager=Pager(library.site, ledger))
    for service in ("web", "db", "web", "cache"):
        engine.start("traffic-surge", {"service": service}, initiator="monitor", trigger={"kind": "alert"})
    engine.pager.close()  # the pages delivered, their records written
    with ledger.read() as conn:
        kinds = set(conn.execute(sa.select(records.c.kind)).scalars())
    assert {"run_started", "step_assigned", "step_ready", "notification", "trigger_repeated"} <= kinds
    ledger.dispose()

    done = sop("audit", "verify", "--json", env={"SOP_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stdout[:1500]
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["records"] > 20
