"""The run ledger: append-only, hash-chained records plus projections (runs, steps, timers).

Every write goes through :meth:`Ledger.transaction`. Records are chained per **lane**
(``records.chain``; ``pos`` is the record's place in its lane): a transaction holds one lane
and each record it appends carries the hash of its lane's previous record. Lane 0 holds the
**checkpoints**: every lane's head, folded into one record now and then (:meth:`Ledger.checkpoint`),
what an auditor anchors. On SQLite one writer at a time (``BEGIN IMMEDIATE``) writes lane 1. On
PostgreSQL a transaction ``per_run`` (the engine's) takes any free lane and locks the rows of the
runs it changes (:meth:`Tx.hold_run`), so writers of different runs go on at once; a checkpoint
holds lane 0 beside them; any other transaction is exclusive (one advisory lock), as every write
was before lanes. Fences (unique
timer levels, the open-run dedup key) are decided by the database, not by memory. docs/audit.md,
"How the chain is kept", says what this detects.

Owns: the tables (``schema``: records, pinned SOP texts, the projections, deliveries,
metric samples, the outbox, pagers) and their migrations (``migrations/``), the chain
(``tx``: :func:`record_hash`, ``GENESIS``, :class:`Tx`), transactions and read connections
(:class:`Ledger`; :class:`Tx` has its fast path for the hot statements: ``driver`` on SQLite, ``pgdriver`` on
PostgreSQL, where a transaction's BEGIN goes with its lock statement and locking a run brings the
lane's head and seqs: round trips are most of a PostgreSQL write's cost; an alert's repeat outside a
batch is one call, its own transaction: :meth:`Ledger.attach`).

May import: ``flows.clock`` and SQLAlchemy only (and Alembic, to migrate). Never the
language, notifications, the engine or anything above: it stores the records it is given
and knows no SOP.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from flows.clock import Clock, SystemClock
from flows.ledger import driver as fast
from flows.ledger.schema import records
from flows.ledger.tx import (
    CHECKPOINT_LANE,
    GENESIS,
    LANES,
    NEW_RUN_SEQS,
    Tx,
    aware,
    dumps,
    lane_of,
    record_hash,
    record_pieces,
    selected,
    utc,
)
from flows.ledger.url import LedgerUnavailable, ledger_url, unreachable

__all__ = ["CHECKPOINT_LANE", "GENESIS", "LANES", "Ledger", "LedgerUnavailable", "Tx", "aware", "dumps", "lane_of",
           "record_hash", "selected", "utc"]

log = logging.getLogger("sop.ledger")

_LAST_CHECKPOINT = (sa.select(records.c.at, records.c.data).where(records.c.chain == CHECKPOINT_LANE)
                    .order_by(records.c.pos.desc()).limit(1))
_ADVISORY_LOCK = 7243_0001  # exclusive: every other writer waits; shared: per-run writers
#: the first key of :meth:`Ledger.exclusive`'s advisory locks (two 32-bit keys: never a writers' lane; until
#: 2026-12-06 it was the lanes' key, so a name whose hash was 0…16 shared a lane's lock)
_EXCLUSIVE_SPACE = 7244
_LANE_LOCKS = 7243  # (7243, lane): the lane a per-run writer holds
#: PostgreSQL's SQLSTATE for a function that does not exist
_UNDEFINED_FUNCTION = "42883"
# a transaction's first statement, sent with its BEGIN in one round trip (flows.ledger.pgdriver.begin): literals only
_PG_SHARED_AND_LANE = "SELECT pg_advisory_xact_lock_shared({k}), pg_try_advisory_xact_lock({l}, {lane})"
_PG_EXCLUSIVE = "SELECT pg_advisory_xact_lock({k})"
_PG_SHARED_AND_WAIT_LANE = "SELECT pg_advisory_xact_lock_shared({k}), pg_advisory_xact_lock({l}, {lane})"
_PG_TRY_LANE = sa.text("SELECT pg_try_advisory_xact_lock(:l, :lane)")
_PG_WAIT_LANE = sa.text("SELECT pg_advisory_xact_lock(:l, :lane)")
#: a pooled PostgreSQL connection idle for longer than this is pinged before use (a busy one is not)
_PING_IDLE_S = 1.0


#: how long a writer waits for another process's write transaction before it gives up
WRITE_WAIT_S = 60.0
#: how often it looks again meanwhile
_WRITE_POLL_S = 0.0005


class BatchRefused(RuntimeError):
    """A per-run batch met a write that must be alone: run the batch's calls one by one."""


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


def _preferred_lane() -> int:
    """The lane this thread's writes try first (spread over processes and threads, stable for each)."""
    return lane_of(f"{os.getpid()}:{threading.get_ident()}")


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
        self._attach_function = True  # PostgreSQL: sop_attach is there (False once it was found missing)
        self._exclusive = [threading.Lock() for _ in range(64)]  # :meth:`exclusive` on SQLite, by name's hash
        #: seconds between this process's checkpoints (None: only when :meth:`checkpoint` is called)
        # how often (seconds, per process) a writer folds the lanes' heads into a checkpoint after a commit; read
        # per ledger, not when the module is imported
        every = float(os.environ.get("SOP_LEDGER_CHECKPOINT_S", "5"))
        self.checkpoint_every: float | None = every if every > 0 else None
        self._next_checkpoint = time.monotonic() + (self.checkpoint_every or 0)
        self._checkpointing = threading.Lock()
        #: a service's (:meth:`keep_checkpoints`): the timer that folds its last writes when no write follows
        self._trailing = False
        self._trailer: threading.Timer | None = None
        self._trailer_lock = threading.Lock()
        #: the fast path of the hot statements (flows.ledger.driver on SQLite, flows.ledger.pgdriver on PostgreSQL)
        self.fast: Any = fast
        if not self.is_sqlite:
            from flows.ledger import pgdriver

            self.fast = pgdriver
        self.engine: Engine = self._make_engine(immediate=True)
        self.reader: Engine = self._make_engine(immediate=False) if self.is_sqlite else self.engine

    def _make_engine(self, immediate: bool) -> Engine:
        if not self.is_sqlite:
            return self._make_pg_engine()
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

    def _make_pg_engine(self) -> Engine:
        """PostgreSQL: connections in autocommit mode, so that a write transaction's ``BEGIN`` goes with its first
        statement (:meth:`_begin`, one round trip instead of two) and a read needs none; psycopg's ``commit`` and
        ``rollback`` still end the transaction that ``BEGIN`` opened. A connection idle for a while is pinged
        before use (a dead one is replaced); a busy one is not: the ping was one more round trip per transaction."""
        # the session's zone UTC, as SQLite reads times back: a naive time in a text statement means
        # the same instant on both (schema.UtcTime already writes the tables' times in UTC)
        engine = sa.create_engine(self.url, future=True, isolation_level="AUTOCOMMIT",
                                  connect_args={"options": "-c timezone=UTC"})

        @sa.event.listens_for(engine, "checkout")
        def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            if time.monotonic() - record.info.get("checked_in", 0.0) > _PING_IDLE_S and not self.fast.alive(dbapi_conn):
                raise sa.exc.DisconnectionError("the ledger's connection was closed")  # the pool connects anew

        @sa.event.listens_for(engine, "checkin")
        def _checked_in(_dbapi_conn: Any, record: Any) -> None:
            record.info["checked_in"] = time.monotonic()

        return engine

    def migrate(self) -> None:
        """Bring the schema to the newest version (Alembic ``upgrade head``). Processes doing it at once take
        turns (on PostgreSQL the writers' advisory lock, taken alone; SQLite's write lock): the first migrates,
        the others find it done.

        A ledger already at the newest version is seen with one read, without loading Alembic: every command
        migrates at its start, and Alembic's import and reading of its scripts cost each ~0.1–0.2 s."""
        try:
            with self.reader.connect() as conn:
                if _revisions(conn) == [head_revision()]:
                    return
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise unreachable(self.url, exc) from None
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.connect() as conn:
            if not self.is_sqlite:  # one transaction for the whole upgrade (the engine's connections autocommit)
                conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                if not self.is_sqlite:  # services started at once on a new ledger: one migrates, the others wait
                    conn.execute(sa.text(_PG_EXCLUSIVE.format(k=_ADVISORY_LOCK)))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    @contextmanager
    def transaction(self, per_run: bool = False, head: bool = False) -> Iterator[Tx]:
        """A write transaction; commits on success, rolls back on any error.

        ``per_run``: the caller calls :meth:`Tx.hold_run` before it reads a run it changes, and
        changes nothing else that two writers could race on (rows it only inserts, or fenced by a
        unique key); then, on PostgreSQL, writers of other runs go on beside it. Otherwise it is
        alone (as every writer is on SQLite). Inside this thread's :meth:`batch` it is part of the
        batch's transaction instead (a per-run batch refuses an exclusive transaction: ``BatchRefused``).

        ``head`` (with ``per_run``): it appends records without holding a run (a pager's record of delivered
        pages): on PostgreSQL its lane's head comes with its ``BEGIN``, one round trip less.
        """
        opened = getattr(self._batch, "open", None)
        if opened is not None:
            if not per_run and opened[0].per_run is not None:
                raise BatchRefused("an exclusive write inside a per-run batch")
            yield opened[0]
            return
        with self._writer, self.engine.begin() as conn:
            tx = self._begin(conn, per_run, head=head)
            yield tx
            tx.commit_deferred()
        self._checkpoint_if_due(tx.appended)

    def _begin(self, conn: Connection, per_run: bool, batch: bool = False, head: bool = False) -> Tx:
        driver = conn.connection.driver_connection
        if self.is_sqlite:
            return Tx(conn=conn, clock=self.clock, driver=driver, fast=self.fast)
        preferred = _preferred_lane()
        deferred: list[Any] | None = None if batch else []  # a batch's later calls may read what one inserts
        if not per_run:
            self.fast.begin(driver, _PG_EXCLUSIVE.format(k=_ADVISORY_LOCK))  # alone: any lane is free
            return Tx(conn=conn, clock=self.clock, driver=driver, fast=self.fast, lane=preferred, deferred=deferred)
        lane = preferred
        locks = _PG_SHARED_AND_LANE.format(k=_ADVISORY_LOCK, l=_LANE_LOCKS, lane=lane)
        # a writer that appends without holding a run: the lane's head read once its lock is held, in the same trip
        found = self.fast.begin(driver, locks, *([self.fast.head_sql(lane, NEW_RUN_SEQS)] if head else []))
        free = found[0][1]
        for step in range(1, LANES):
            if free:
                break
            lane = (preferred + step - 1) % LANES + 1
            free = conn.execute(_PG_TRY_LANE, {"l": _LANE_LOCKS, "lane": lane}).scalar_one()
        if not free:  # every lane busy: wait for ours
            lane = preferred
            conn.execute(_PG_WAIT_LANE, {"l": _LANE_LOCKS, "lane": lane})
        tx = Tx(conn=conn, clock=self.clock, driver=driver, fast=self.fast, lane=lane,
                per_run=" NOWAIT" if batch else "", deferred=deferred)
        if head and lane == preferred:
            pos, digest, seqs = found[1]
            tx.took_head(None if pos is None else (pos, digest), seqs)
        return tx

    # --- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, actor: str = "ledger") -> int | None:
        """Fold every lane's head (and the head of the records written before lanes) into one
        ``checkpoint`` record in lane 0, chained to the one before; returns its seq (None when
        nothing was written since the last one). Its seq and hash are what an auditor notes down."""
        with self._checkpointing_tx() as tx:
            last = tx.first(_LAST_CHECKPOINT)
            before = json.loads(last[1]) if last is not None else {}
            lanes = {str(lane): [pos, digest] for lane, (pos, digest) in tx.lane_heads().items()}
            legacy = before.get("legacy") if last is not None else self._legacy_head(tx)
            if last is not None and before.get("lanes") == lanes:
                return None
            tx.lane = CHECKPOINT_LANE
            return tx.append("checkpoint", actor=actor, lanes=lanes, legacy=legacy)

    @contextmanager
    def _checkpointing_tx(self) -> Iterator[Tx]:
        """A checkpoint's transaction. SQLite: a write like any other (one writer at a time). PostgreSQL: beside
        the per-run writers, not instead of them: it holds lane 0 (so checkpoints are written one at a time) and
        reads the lanes' heads afterwards, in one statement: what was committed by then. A writer still in
        flight appends after the head it saw, so every later checkpoint sees at least as much; an exclusive
        writer still excludes it. (Taken alone, it stalled every writer of every process for its wait and its
        write, every 5 s: docs/benchmarks.md, "Team ingest".)"""
        if self.is_sqlite or getattr(self._batch, "open", None) is not None:
            with self.transaction() as tx:
                yield tx
            return
        with self.engine.begin() as conn:
            driver = conn.connection.driver_connection
            self.fast.begin(driver, _PG_SHARED_AND_WAIT_LANE.format(k=_ADVISORY_LOCK, l=_LANE_LOCKS,
                                                                    lane=CHECKPOINT_LANE))
            yield Tx(conn=conn, clock=self.clock, driver=driver, fast=self.fast, lane=CHECKPOINT_LANE)

    @staticmethod
    def _legacy_head(tx: Tx) -> list[Any] | None:
        """The last record written before lanes (seq, hash), once: the first checkpoint keeps it."""
        row = tx.first(sa.select(records.c.seq, records.c.hash).where(records.c.chain.is_(None))
                       .order_by(records.c.seq.desc()).limit(1))
        return None if row is None else [row[0], row[1]]

    def keep_checkpoints(self) -> None:
        """A long-lived process (a service): what it writes is folded into a checkpoint once one is due
        (``checkpoint_every`` after the last), even when no write of its follows; else a commit after that does it,
        maybe hours later (docs/audit.md, "The window"). :meth:`settle` folds them at once when it stops."""
        self._trailing = True

    def settle(self) -> None:
        """A service stopping: the checkpoint its last writes wait for (:meth:`keep_checkpoints`), now; nothing when
        none waits."""
        if self._untrail():
            self._checkpoint_now()

    def _untrail(self) -> bool:
        """Cancel the timer of a checkpoint to come; whether there was one."""
        with self._trailer_lock:
            trailer, self._trailer = self._trailer, None
        if trailer is not None:
            trailer.cancel()
        return trailer is not None

    def _checkpoint_if_due(self, wrote: bool = True) -> None:
        if self.checkpoint_every is None or getattr(self._batch, "open", None) is not None:
            return
        if time.monotonic() >= self._next_checkpoint:
            self._checkpoint_now()
        elif wrote and self._trailing:
            self._trail()

    def _trail(self, at_least: float = 0.0) -> None:
        """Fold what was just written when the next checkpoint is due, ``at_least`` seconds from now (one timer at a
        time)."""
        with self._trailer_lock:
            if self._trailer is not None:
                return
            self._trailer = threading.Timer(max(at_least, self._next_checkpoint - time.monotonic()), self._trailed)
            self._trailer.daemon = True
            self._trailer.start()

    def _trailed(self) -> None:
        with self._trailer_lock:
            self._trailer = None
        self._checkpoint_now()

    def _checkpoint_now(self) -> None:
        if not self._checkpointing.acquire(blocking=False):
            # another thread's is being written: it may have read the heads before this commit, so a service folds
            # it with the next one (a timer, once that one is done), not never
            if self._trailing and self.checkpoint_every is not None:
                self._trail(at_least=self.checkpoint_every)
            return
        try:
            self._next_checkpoint = time.monotonic() + self.checkpoint_every
            self.checkpoint()
        except Exception as exc:  # noqa: BLE001 - the writer's own work is committed; the next one tries again
            log.warning("event=checkpoint_failed error=%s", " ".join(str(exc).split())[:300])
        finally:
            self._checkpointing.release()

    @contextmanager
    def batch(self, per_run: bool = False) -> Iterator[None]:
        """Group commit: every :meth:`transaction` of this thread inside is one transaction.

        ``per_run``: as for :meth:`transaction`; on PostgreSQL a run another writer holds is an
        error at once (``NOWAIT``) rather than a wait, so two batches never wait on each other.

        Begin, the chain's last hash and commit are then paid once for the batch instead of
        once per transition. All or nothing: an exception rolls back the whole batch, so a
        caller runs its work again one transaction at a time to isolate what failed.
        :meth:`after_commit` callbacks run once the batch is committed (dropped when it is
        rolled back); :meth:`read` sees the batch's own writes.
        """
        if getattr(self._batch, "open", None) is not None:
            raise RuntimeError("a ledger batch is already open on this thread")
        after: list[Callable[[], None]] = []
        with self._writer, self.engine.begin() as conn:
            tx = self._begin(conn, per_run, batch=True)
            self._batch.open = (tx, after)
            try:
                yield
            finally:
                self._batch.open = None
        for callback in after:
            callback()
        self._checkpoint_if_due(tx.appended)

    def attaches_alone(self) -> bool:
        """:meth:`attach` may be used here: PostgreSQL, outside this thread's :meth:`batch`."""
        return not self.is_sqlite and self._attach_function and getattr(self._batch, "open", None) is None

    def attach(self, open_key: str, copies: int, now: datetime, kind: str, actor: str | None,
               data: dict[str, Any]) -> tuple[str, int] | None:
        """PostgreSQL, outside a batch (:meth:`attaches_alone`), in a transaction of its own and one round trip
        (``sop_attach``, migration 0015): the run open on ``open_key`` held, ``copies`` added to its repeats
        (``runs.repeats``), seen ``now``, and a record of ``kind`` on it whose data is ``data`` with ``repeats`` set
        to the new count, by ``actor`` at ``now`` (the record :meth:`Tx.hold_and_append` appends). The run's id and
        repeats; None (nothing written) when no run is open on the key, or when the database has no ``sop_attach``
        (not migrated to 0015 by this release: logged once, and :meth:`attaches_alone` is False from then on):
        the caller's own transaction attaches."""
        values = {"_key": open_key, "_copies": copies, "_now": now, "_lock": _ADVISORY_LOCK,
                  "_lane_space": _LANE_LOCKS, "_lane": _preferred_lane(),
                  "_lanes": LANES, "_genesis": GENESIS, **record_pieces(kind, actor, now, data, "repeats")}
        try:
            with self.engine.connect() as conn:  # autocommit: the statement is the transaction
                found = self.fast.attach_alone(conn.connection.driver_connection, values)
        except sa.exc.ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != _UNDEFINED_FUNCTION:
                raise
            self._attach_function = False
            log.warning("event=attach_function_missing then=\"each repeat attaches in a transaction of its own\" "
                        "fix=\"migrate the ledger (any sop command opening it does)\"")
            return None
        if found is None:
            return None
        self._checkpoint_if_due()
        return found[0], found[1]

    @functools.cached_property
    def groups_commits(self) -> bool:
        """Whether calls queued together should share one transaction (:meth:`batch`, group commit). SQLite: yes
        (one writer at a time; a commit's cost is paid once). PostgreSQL: when a commit waits for the disk
        (``synchronous_commit`` other than ``off``); with it ``off`` (a crash of the server may lose the last
        moment's commits: docs/team.md, "Commits and durability") a commit costs no wait, and an alert's repeat
        alone is one round trip (:meth:`attach`) where in a batch it is one plus its share of the batch's ``BEGIN``
        and ``COMMIT``. Read once, when first asked (an API process: at start)."""
        if self.is_sqlite:
            return True
        try:
            with self.reader.connect() as conn:
                return conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() != "off"
        except sa.exc.DBAPIError:  # not reachable now: group (the writes say why they fail)
            return True

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
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="READ COMMITTED")  # a transaction: the engine's autocommit
            with conn.begin():
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
        """Close pooled connections (a checkpoint still to come is not written: :meth:`settle` writes it)."""
        self._untrail()
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()


_MIGRATIONS = Path(__file__).parent / "migrations"


@functools.cache
def head_revision() -> str:
    """The newest migration's revision, read from its file without Alembic. The files of ``migrations/versions``
    are numbered in the order they apply (``0015_attach_alone.py``: a test holds them to it), so the newest is
    the greatest name."""
    newest = max((_MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    found = re.search(r"""^revision(?:: str)? = ['"]([^'"]+)['"]""", newest.read_text(encoding="utf-8"), re.MULTILINE)
    return found[1] if found else ""  # "": not read (Alembic's own template writes it otherwise): Alembic decides


def _revisions(conn: Connection) -> list[str]:
    """The revisions Alembic has recorded on this database ([] before its first migration)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return []
    return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
