"""PostgreSQL: what an alert costs in round trips to the database, counted at the driver (psycopg).

Round trips, not statements or timings, are what a PostgreSQL write pays most for (docs/benchmarks.md,
"Team ingest"). A change that makes a write path send one more statement on its own fails here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from flows.engine.paging import Pager
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import pagers

pytestmark = pytest.mark.postgresql_only("PostgreSQL's round trips; SQLite has none (the ledger is in process)")

#: an alert attaching to its open run, alone (not in a batch): one statement that is its own transaction
#: (``sop_attach``: the locks, then the run found, held, its repeat counted and its record appended). Five
#: before 2026-12-05; four, then three (BEGIN with the locks, the attach, COMMIT) before 2026-12-06
ATTACH = 1
#: a new run of traffic-surge, its pages left to a pager process: the attach that finds no open run (one), then
#: the new run's transaction (four: BEGIN with the locks and the lane's head, the run's row, the on-call overrides,
#: and one pipeline of its other rows with the COMMIT). Eleven before 2026-12-07 (seven counted then: its three
#: ``executemany`` and the outbox's were not), six until its transaction looked again for the open run
NEW_RUN = 5
#: the pager's record of a few delivered pages (``Pager._write_chunk``): BEGIN with the locks and the lane's head, then
#: one pipeline of the records, deliveries and outbox rows done with the COMMIT. Four before 2026-12-07 (the lane's
#: head and the outbox's rows marked done each on their own)
PAGES_RECORDED = 2


class RoundTrips:
    """Counts what psycopg sends and waits for on the thread that made it: a statement alone, a pipeline, a COMMIT or
    ROLLBACK that ends a transaction. (Other threads, such as those an earlier test of the session left running
    on ledgers of their own, are not counted.)"""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        ours = threading.get_ident()
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        pipeline = psycopg.Connection.pipeline
        commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

        def counted_execute(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            if cursor.connection._pipeline is None and threading.get_ident() == ours:
                self.count += 1
            return execute(cursor, *args, **kwargs)

        def counted_executemany(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            if cursor.connection._pipeline is None and threading.get_ident() == ours:
                self.count += 1  # a pipeline of its own
            return executemany(cursor, *args, **kwargs)

        def counted_pipeline(conn: Any) -> Any:
            if threading.get_ident() == ours:
                self.count += 1
            return pipeline(conn)

        def ending(method: Any) -> Any:
            def ends(conn: Any) -> Any:
                if conn.info.transaction_status != TransactionStatus.IDLE and threading.get_ident() == ours:
                    self.count += 1
                return method(conn)
            return ends

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Cursor, "executemany", counted_executemany)
        monkeypatch.setattr(psycopg.Connection, "pipeline", counted_pipeline)
        monkeypatch.setattr(psycopg.Connection, "commit", ending(commit))
        monkeypatch.setattr(psycopg.Connection, "rollback", ending(rollback))

    def of(self, work: Any) -> int:
        before = self.count
        work()
        return self.count - before


@pytest.fixture
def engine(repo_root: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    monkeypatch.setattr("flows.ledger._PING_IDLE_S", 3600.0)  # no ping of a pooled connection on a slow machine
    monkeypatch.setattr("flows.engine.paging.ALIVE_CHECK_S", 3600.0)  # nor a second look for a pager (once a second)
    ledger = Ledger(database_url)
    ledger.checkpoint_every = None
    ledger.migrate()
    with ledger.transaction() as tx:  # a pager process alive: pages are left in the outbox, as in a team
        far = datetime.now(UTC) + timedelta(days=1)
        tx.conn.execute(pagers.insert().values(name="pager", pid=0, started_at=far, beat_at=far))
    library = load_library(repo_root)
    engine = Engine(library, ledger, pager=Pager(library.site, ledger))
    yield engine
    engine.pager.close()
    ledger.dispose()


def alert(engine: Engine, service: str) -> Any:
    return engine.start("traffic-surge", {"service": service}, initiator="alertmanager",
                        trigger={"kind": "alert", "labels": {"service": service}})


def test_an_alert_attaching_to_its_open_run_costs_one_round_trip(engine: Engine,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    alert(engine, "warm")  # the SOP text pinned, statements prepared
    alert(engine, "web")
    trips = RoundTrips(monkeypatch)

    counts = [trips.of(lambda: alert(engine, "web")) for _ in range(3)]

    assert counts == [ATTACH] * 3
    with engine.ledger.read() as conn:
        assert conn.exec_driver_sql("SELECT repeats FROM runs WHERE dedup_key = 'web'").scalar_one() == 3


def test_a_new_run_costs_no_more_round_trips_than_it_did(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    alert(engine, "warm")
    alert(engine, "warm-2")
    trips = RoundTrips(monkeypatch)

    counts = [trips.of(lambda service=service: alert(engine, service)) for service in ("db", "cache", "queue")]

    assert counts == [NEW_RUN] * 3


def test_a_ledger_without_the_attach_function_attaches_as_before(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A process of this release on a ledger not migrated to 0015 (no ``sop_attach``): the first repeat finds the
    function missing, says so once, and attaches in a transaction of its own (3 round trips, as before); the next
    ones go there at once. Every repeat is counted."""
    alert(engine, "warm")
    alert(engine, "web")
    with engine.ledger.engine.connect() as conn:
        conn.exec_driver_sql("DROP FUNCTION sop_attach")
    trips = RoundTrips(monkeypatch)

    counts = [trips.of(lambda: alert(engine, "web")) for _ in range(3)]

    assert counts == [1 + 3, 3, 3]
    assert len([r for r in caplog.records if "attach_function_missing" in r.message]) == 1
    with engine.ledger.read() as conn:
        assert conn.exec_driver_sql("SELECT repeats FROM runs WHERE dedup_key = 'web'").scalar_one() == 3


def test_a_pagers_record_of_delivered_pages_costs_two_round_trips(engine: Engine,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pager process writes once a few pages are delivered: their records, deliveries and outbox rows done."""
    from flows.engine.paging import Batched
    from flows.ledger.schema import outbox
    from notifications import DeliveryResult

    for service in ("warm", "db", "cache"):
        alert(engine, service)
    with engine.ledger.read() as conn:
        left = conn.execute(sa.select(outbox.c.id, outbox.c.run_id).where(outbox.c.done_at.is_(None))).all()
    now = engine.clock.now()
    results = [DeliveryResult(recipient="tom-becker", recipient_kind="person", destination="inbox://tom-becker",
                              ok=True, error=None, attempts=1, latency=0.01, at=now, kind="run_started")]
    batches = [[Batched(run_id, None, "run_started", results, outbox_id) for outbox_id, run_id in left[k::2]]
               for k in range(2)]
    engine.pager._write_chunk(batches[0])  # statements prepared
    trips = RoundTrips(monkeypatch)

    count = trips.of(lambda: engine.pager._write_chunk(batches[1]))

    assert count == PAGES_RECORDED
    with engine.ledger.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.done_at.is_(None))).scalar() == 0
        recorded = conn.exec_driver_sql("SELECT count(*) FROM records WHERE kind = 'notification'").scalar_one()
    assert recorded == len(left)
