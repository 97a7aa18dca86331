"""The run ledger: append-only, hash-chained records plus projections (runs, steps, timers).

Every write goes through :meth:`Ledger.transaction`, which serialises writers (SQLite
``BEGIN IMMEDIATE``; a PostgreSQL advisory lock) so that each record can carry the hash of
the one before it, and so that fences (unique timer levels, the open-run dedup key) are
decided by the database, not by memory.

Owns: the tables (``schema``: records, pinned SOP texts, the projections, deliveries,
metric samples, the outbox, pagers) and their migrations (``migrations/``), the chain
(:func:`record_hash`, ``GENESIS``), transactions and read connections (:class:`Ledger`,
:class:`Tx`, with its fast path for the hot statements on SQLite).

May import: ``flows.clock`` and SQLAlchemy only (and Alembic, to migrate). Never the
language, notifications, the engine or anything above: it stores the records it is given
and knows no SOP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from flows.clock import Clock, SystemClock
from flows.ledger import driver as fast
from flows.ledger.schema import in_utc, records
from flows.ledger.url import LedgerUnavailable, ledger_url, unreachable

__all__ = ["GENESIS", "Ledger", "LedgerUnavailable", "Tx", "dumps", "record_hash", "utc"]

GENESIS = "0" * 64
# built once: building a statement per call costs more than executing it
_LAST_RECORD = sa.select(records.c.seq, records.c.hash).order_by(records.c.seq.desc()).limit(1)
_INSERT_RECORD = records.insert()
_ADVISORY_LOCK = 7243_0001
#: the first key of :meth:`Ledger.exclusive`'s advisory locks (two 32-bit keys: never the writers' lock)
_EXCLUSIVE_SPACE = 7243


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC (``schema.UtcTime`` writes them so); make them aware."""
    return None if value is None else in_utc(value)


def dumps(data: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) — what the hash chain is computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def record_hash(prev_hash: str, seq: int, at: datetime, run_id: str | None, step_id: str | None,
                kind: str, actor: str | None, data: str) -> str:
    """The hash of one record, chained to the previous record's hash."""
    body = dumps([seq, utc(at).isoformat(), run_id, step_id, kind, actor, data])  # type: ignore[union-attr]
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


@dataclass
class Tx:
    """An open write transaction: append records, update projections on ``conn``."""

    conn: Connection
    clock: Clock
    #: the SQLite driver's connection under ``conn`` (None on other databases): see :meth:`execute`
    driver: Any = None
    _last: tuple[int, str] | None = None
    #: records appended inside :meth:`held`, inserted when it ends
    _held: list[dict[str, Any]] | None = None

    # --- the hot statements: on SQLite straight to the driver (flows.ledger.driver), same rows,
    # same errors; elsewhere through SQLAlchemy --------------------------------------------------

    def execute(self, statement: Any, params: dict[str, Any]) -> None:
        """Execute a built insert, update or delete with these parameters."""
        if self.driver is None:
            self.conn.execute(statement, params)
        else:
            fast.execute(self.driver, statement, params)

    def executemany(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        """Execute a built insert for each row (all rows have the same keys)."""
        if not rows:
            return
        if self.driver is None:
            self.conn.execute(statement, rows)
        else:
            fast.executemany(self.driver, statement, rows)

    def first(self, statement: Any, params: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
        """The first row of a built select, as a tuple (None when there is none); select no times this way."""
        if self.driver is None:
            row = self.conn.execute(statement, params or {}).first()
            return None if row is None else tuple(row)
        return fast.first(self.driver, statement, params or {})

    def append(self, kind: str, run_id: str | None = None, step_id: str | None = None,
               actor: str | None = None, at: datetime | None = None, **data: Any) -> int:
        """Append one record to the chain; returns its sequence number."""
        return self.append_text(kind, run_id, step_id, actor, at or self.clock.now(), dumps(data))

    def append_text(self, kind: str, run_id: str | None, step_id: str | None, actor: str | None, at: datetime,
                    text: str) -> int:
        """:meth:`append` with the data already written as canonical JSON (``dumps``)."""
        if self._last is None:
            row = self.first(_LAST_RECORD)
            self._last = (row[0], row[1]) if row else (0, GENESIS)
        seq, prev = self._last[0] + 1, self._last[1]
        digest = record_hash(prev, seq, at, run_id, step_id, kind, actor, text)
        row = {"seq": seq, "at": at, "run_id": run_id, "step_id": step_id, "kind": kind, "actor": actor,
               "data": text, "prev_hash": prev, "hash": digest}
        if self._held is not None:
            self._held.append(row)
        else:
            self.execute(_INSERT_RECORD, row)
        self._last = (seq, digest)
        return seq

    @contextmanager
    def held(self) -> Iterator[None]:
        """Records appended inside are inserted together, in one statement, when the block ends.

        Their seq and hash are decided as they are appended, as usual. Until the block ends
        they are not in ``records``: nothing inside may read that table (the engine's
        transitions do not). An exception inside inserts none of them.
        """
        if self._held is not None:  # already holding: the outer block inserts them
            yield
            return
        self._held, last = [], self._last
        try:
            yield
            self.executemany(_INSERT_RECORD, self._held)
        except BaseException:
            self._last = last  # none of them was inserted: the chain goes on from where it was
            raise
        finally:
            self._held = None


#: how long a writer waits for another process's write transaction before it gives up
WRITE_WAIT_S = 60.0
#: how often it looks again meanwhile
_WRITE_POLL_S = 0.0005


def _begin_immediate(dbapi_conn: Any) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's writer by looking again every half millisecond.

    SQLite's own busy handler (the writers' connections have none, see ``_make_engine``) sleeps
    1, 2, 5, 10, 15, 20, 25, 25, 25, 50… ms between tries, so a writer that waited a little waits
    on long after the lock is free: in an alert storm the API and the pager process took turns
    at the lock, and each waited many times longer than the lock was held.
    """
    cursor = dbapi_conn.cursor()
    deadline = None
    try:
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                now = time.monotonic()
                deadline = deadline or now + WRITE_WAIT_S
                if not _locked(exc) or now >= deadline:  # as SQLAlchemy raises it for any other statement
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(_WRITE_POLL_S)
    finally:
        cursor.close()


def _locked(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class Ledger:
    """The ledger database (SQLite file by default, PostgreSQL by URL)."""

    def __init__(self, url: str, clock: Clock | None = None):
        self.url = url = ledger_url(url)  # LedgerUnavailable for a URL or driver it cannot run on
        self.clock = clock or SystemClock()
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Writers of this process queue here rather than in SQLite's busy handler, which sleeps
        # 25-100 ms between retries: under a burst that sleep, not the work, made the tail.
        self._writer = threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        self._batch = threading.local()  # .open: (Tx, after-commit callables) of this thread's batch
        self._exclusive = [threading.Lock() for _ in range(64)]  # :meth:`exclusive` on SQLite, by name's hash
        self.engine: Engine = self._make_engine(immediate=True)
        self.reader: Engine = self._make_engine(immediate=False) if self.is_sqlite else self.engine

    def _make_engine(self, immediate: bool) -> Engine:
        if not self.is_sqlite:
            # the session's zone UTC, as SQLite reads times back: a naive time in a text statement means
            # the same instant on both (schema.UtcTime already writes the tables' times in UTC)
            return sa.create_engine(self.url, pool_pre_ping=True, future=True,
                                    connect_args={"options": "-c timezone=UTC"})
        engine = sa.create_engine(self.url, future=True, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if immediate:  # in WAL mode only BEGIN IMMEDIATE waits on a writer: _begin_immediate does
                cursor.execute("PRAGMA busy_timeout=0")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            if immediate:
                _begin_immediate(conn.connection.dbapi_connection)
            else:
                conn.exec_driver_sql("BEGIN")

        return engine

    def migrate(self) -> None:
        """Bring the schema to the newest version (Alembic ``upgrade head``). Processes doing it at once take
        turns (on PostgreSQL the writers' advisory lock; SQLite's write lock): the first migrates, the others
        find it done."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            conn = self.engine.connect()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise unreachable(self.url, exc) from None
        conn.close()
        with self.engine.begin() as conn:
            if not self.is_sqlite:  # services started at once on a new ledger: one migrates, the others wait, find it done
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A serialised write transaction; commits on success, rolls back on any error.

        Inside this thread's :meth:`batch` it is part of the batch's transaction instead.
        """
        opened = getattr(self._batch, "open", None)
        if opened is not None:
            yield opened[0]
            return
        with self._writer, self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            yield Tx(conn=conn, clock=self.clock, driver=conn.connection.driver_connection if self.is_sqlite else None)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every :meth:`transaction` of this thread inside is one transaction.

        Begin, the chain's last hash and commit are then paid once for the batch instead of
        once per transition. All or nothing: an exception rolls back the whole batch, so a
        caller runs its work again one transaction at a time to isolate what failed.
        :meth:`after_commit` callbacks run once the batch is committed (dropped when it is
        rolled back); :meth:`read` sees the batch's own writes.
        """
        if getattr(self._batch, "open", None) is not None:
            raise RuntimeError("a ledger batch is already open on this thread")
        after: list[Callable[[], None]] = []
        with self.transaction() as tx:
            self._batch.open = (tx, after)
            try:
                yield
            finally:
                self._batch.open = None
        for callback in after:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this thread's batch commits; outside a batch, at once.

        For what must not happen before a transition is durable (pages, flow-run launches):
        call it after your own transaction, and it also waits for an enclosing batch.
        """
        opened = getattr(self._batch, "open", None)
        if opened is None:
            callback()
        else:
            opened[1].append(callback)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """While the block runs, no other holder of ``name`` runs its own, in any process on this ledger
        (PostgreSQL: an advisory lock of a transaction of its own, let go at its end or when its process dies;
        SQLite: a lock of this process, its ledger being one machine's). For work outside the ledger that two
        processes must not do at once (resuming one run's flow run); it writes nothing."""
        if self.is_sqlite:
            with self._exclusive[zlib.crc32(name.encode()) % len(self._exclusive)]:
                yield
            return
        with self.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))"),
                         {"space": _EXCLUSIVE_SPACE, "name": name})
            yield

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (a consistent snapshot on SQLite WAL); in a batch, the batch's own."""
        opened = getattr(self._batch, "open", None)
        if opened is not None:
            yield opened[0].conn
            return
        with self.reader.connect() as conn:
            yield conn

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()
