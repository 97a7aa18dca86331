"""A site's ledger written before lanes (at ``0012_executors``) upgrades to lanes and keeps its promise.

Its records stay one chain in ``seq`` order and verify as they were written; new records go in lanes;
the first checkpoint folds the old chain's last record, so an edit of an old record is still caught.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import flows.ledger
from flows.audit.verify import verify_chain
from flows.ledger import GENESIS, Ledger, record_hash
from flows.ledger.schema import records
from tests.conftest import TestDatabase, sql_on

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIGRATIONS = Path(flows.ledger.__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_the_migrations_are_one_line_through_lanes_wide_ids_and_the_attach_function() -> None:
    script = ScriptDirectory.from_config(_config())
    assert script.get_heads() == ["0020_refusals"]
    assert script.get_revision("0020_refusals").down_revision == "0019_digests"
    assert script.get_revision("0019_digests").down_revision == "0018_once_keys"
    assert script.get_revision("0018_once_keys").down_revision == "0017_caseless_keys"
    assert script.get_revision("0017_caseless_keys").down_revision == "0016_drill_keys"
    assert script.get_revision("0016_drill_keys").down_revision == "0015_attach_alone"
    assert script.get_revision("0015_attach_alone").down_revision == "0014_wide_ids"
    assert script.get_revision("0014_wide_ids").down_revision == "0013_chains"
    assert script.get_revision("0013_chains").down_revision == "0012_executors"
    assert len(script.get_bases()) == 1
    # Ledger.migrate knows the head without Alembic: the files' names sort in the order the revisions apply
    applied = [Path(revision.path).name for revision in reversed(list(script.walk_revisions()))]
    assert applied == sorted(path.name for path in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert flows.ledger.head_revision() == script.get_current_head()


@pytest.fixture
def old_url(database: TestDatabase, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty ledger database, not migrated yet (a file; a fresh PostgreSQL database)."""
    if database.is_sqlite:
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("postgres").database(f"old_{abs(hash(request.node.name)) % 10**8}")


def _write_as_before_lanes(url: str, count: int) -> None:
    """Records as the single writer wrote them at 0012: seq 1, 2, 3…, each hashing its seq and fields only."""
    prev, rows = GENESIS, []
    for seq in range(1, count + 1):
        at = T0 + timedelta(seconds=seq)
        data = f'{{"n":{seq}}}'
        digest = record_hash(prev, seq, at, "old-run", None, "note", "ana", data)
        rows.append(("INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash) "
                     "VALUES (?, ?, 'old-run', NULL, 'note', 'ana', ?, ?, ?)",
                     (seq, at.replace(tzinfo=None).isoformat(" ") if url.startswith("sqlite") else at,
                      data, prev, digest)))
        prev = digest
    sql_on(url, *rows)


def _verify(ledger: Ledger) -> Any:
    with ledger.read() as conn:
        return verify_chain(conn)


def test_a_ledger_at_0012_upgrades_and_its_old_records_stay_verified(old_url: str) -> None:
    ledger = Ledger(old_url)
    ledger.checkpoint_every = None
    with ledger.engine.begin() as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012_executors")
    _write_as_before_lanes(old_url, 5)

    ledger.migrate()  # what `sop serve` (any command) does at start: 0013_chains, 0014_wide_ids
    assert _verify(ledger).ok
    with ledger.transaction() as tx:
        tx.append("note", "new-run", actor="ana", n=6)
    ledger.checkpoint()
    result = _verify(ledger)
    assert result.ok, result.to_dict()
    with ledger.read() as conn:
        kept = conn.execute(sa.select(records.c.seq, records.c.chain).order_by(records.c.seq)).all()
    assert [tuple(r) for r in kept[:5]] == [(n, None) for n in range(1, 6)]  # the old chain, as it was
    assert kept[5].chain is not None and kept[-1].chain == 0  # the new record in a lane, then the checkpoint
    assert kept[5].seq > 5

    sql_on(old_url, ("UPDATE records SET actor = 'mallory' WHERE seq = 3", ()))  # an old record edited
    first = _verify(ledger).first_break
    assert first is not None and (first.seq, first.kind, first.lane) == (3, "edited", None)
    ledger.dispose()
