"""The chain and an open write transaction: records hashed and appended in a lane (:class:`Tx`).

A record's hash covers its predecessor's in its lane, its lane and place, its seq and fields
(:func:`record_hash`). A :class:`Tx` appends to the one lane its transaction holds, keeps the lane's
head and its seqs, and sends the hot statements through a fast path (``driver`` on SQLite,
``pgdriver`` on PostgreSQL). :class:`flows.ledger.Ledger` opens it; docs/audit.md, "How the chain
is kept", says what the lanes promise.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.clock import Clock
from flows.ledger import driver as fast
from flows.ledger.schema import RECORDS_SEQ, in_utc, records

GENESIS = "0" * 64
#: the lane of the checkpoints
CHECKPOINT_LANE = 0
#: the writers' lanes on PostgreSQL are 1…LANES (on SQLite, one writer at a time: lane 1). Records
#: never move between lanes, so this may change at any time; checkpoints fold lanes 1…LANES.
LANES = 16
# built once: building a statement per call costs more than executing it
_MAX_SEQ = sa.select(sa.func.max(records.c.seq))
_LANE_HEAD = (sa.select(records.c.pos, records.c.hash).where(records.c.chain == sa.bindparam("_chain"))
              .order_by(records.c.pos.desc()).limit(1))
_INSERT_RECORD = records.insert()
_SEQS = f"ARRAY(SELECT nextval('{RECORDS_SEQ}'::regclass) FROM generate_series(1, :n))"
_PG_HEAD = sa.text(f"SELECT h.pos, h.hash, {_SEQS} FROM (SELECT 1) AS one LEFT JOIN LATERAL "
                   "(SELECT pos, hash FROM records WHERE chain = :chain ORDER BY pos DESC LIMIT 1) AS h ON true")
_PG_SEQS = sa.text(f"SELECT {_SEQS}")
# every writers' lane's head in one statement (one index probe per lane): lanes, places, hashes
_PG_LANE_HEADS = sa.text(
    "SELECT array_agg(l.lane ORDER BY l.lane), array_agg(h.pos ORDER BY l.lane), array_agg(h.hash ORDER BY l.lane) "
    "FROM generate_series(1, :lanes) AS l(lane) CROSS JOIN LATERAL "
    "(SELECT pos, hash FROM records WHERE chain = l.lane ORDER BY pos DESC LIMIT 1) AS h")
_HOLD_RUN = {wait: sa.text(f"SELECT 1 FROM runs WHERE id = :id FOR UPDATE{wait}") for wait in ("", " NOWAIT")}
#: how many sequence numbers a PostgreSQL writer takes at once (the unused ones are gaps: harmless)
_SEQ_BLOCK = 8
#: … and when it finds no run to attach to (a new run follows, and appends ~10 records), or reads its lane's head
#: with its BEGIN (``Ledger.transaction(head=True)``: a new run, a pager's record of a few pages)
NEW_RUN_SEQS = 16


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC (``schema.UtcTime`` writes them so); make them aware."""
    return None if value is None else in_utc(value)


def selected(conn: Connection, *queries: tuple[Any, dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Built selects (statement, parameters) on ``conn``: each one's rows as dicts by column name, their times aware.
    On PostgreSQL in one round trip, straight to the driver (``pgdriver.selected``: a run's view read this way cost
    half the client's CPU of two SQLAlchemy selects, docs/benchmarks.md "A new run on PostgreSQL"); elsewhere one by
    one through SQLAlchemy."""
    if conn.dialect.name == "postgresql":
        from flows.ledger import pgdriver

        found = pgdriver.selected(conn.connection.driver_connection, list(queries))
    else:
        found = [[dict(row._mapping) for row in conn.execute(statement, params)] for statement, params in queries]
    return [[aware(row) for row in rows] for rows in found]


def aware(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its times in UTC and aware (SQLite hands back naive UTC), changed in place."""
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = in_utc(value)
    return row


def dumps(data: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) — what the hash chain is computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def dumps_around(data: dict[str, Any], key: str) -> tuple[str, str]:
    """``dumps(data)`` with ``key`` added, cut around ``key``'s integer value: for any integer ``n``,
    ``prefix + str(n) + suffix == dumps({**data, key: n})`` (keys sorted, as :func:`dumps` sorts them)."""
    keys = sorted({*data, key})
    at = keys.index(key)
    before = ",".join(f"{dumps(k)}:{dumps(data[k])}" for k in keys[:at])
    after = ",".join(f"{dumps(k)}:{dumps(data[k])}" for k in keys[at + 1:])
    return "{" + (before + "," if before else "") + dumps(key) + ":", ("," + after if after else "") + "}"


def record_pieces(kind: str, actor: str | None, at: datetime, data: dict[str, Any], count: str) -> dict[str, Any]:
    """A record of ``kind`` by ``actor`` at ``at`` whose data is ``data`` with the integer ``count`` set, cut where
    the values only the server knows go (its seq, run, count, lane and place), for the server to put them in and
    hash it (``Tx.hold_and_append``; PostgreSQL's ``sop_attach``, migration 0015). The data is ``_prefix`` +
    count + ``_suffix``; the hashed text (:func:`record_hash`: ``prev|[seq,at,run,null,kind,actor,data,chain,pos]``)
    is ``prev|[`` + seq + ``_at_text`` + run as JSON + ``_kind_to_count`` + count + ``_count_to_lane`` + lane +
    ``,`` + place + ``]``. Every JSON escape is made here, by :func:`dumps`."""
    prefix, suffix = dumps_around(data, count)
    before, after = dumps(prefix)[:-1], dumps(suffix)[1:]
    return {"_kind": kind, "_actor": actor, "_prefix": prefix, "_suffix": suffix,
            "_at_text": f",{dumps(utc(at).isoformat())},",  # type: ignore[union-attr]
            "_kind_to_count": f",null,{dumps(kind)},{dumps(actor)},{before}", "_count_to_lane": f"{after},"}


def record_hash(prev_hash: str, seq: int, at: datetime, run_id: str | None, step_id: str | None,
                kind: str, actor: str | None, data: str, chain: int | None = None, pos: int | None = None) -> str:
    """The hash of one record, chained to the previous record's hash (of its lane: ``chain``, at ``pos``;
    without a lane, of the record before it in ``seq`` order: the records written before lanes)."""
    fields: list[Any] = [seq, utc(at).isoformat(), run_id, step_id, kind, actor, data]  # type: ignore[union-attr]
    if chain is not None:
        fields += [chain, pos]
    return hashlib.sha256(f"{prev_hash}|{dumps(fields)}".encode()).hexdigest()


def lane_of(key: str) -> int:
    """The lane a writer prefers (1…LANES), from a key such as its thread: spread, stable."""
    return zlib.crc32(key.encode()) % LANES + 1


@dataclass
class Tx:
    """An open write transaction: append records, update projections on ``conn``."""

    conn: Connection
    clock: Clock
    #: the driver's connection under ``conn`` and the fast path that sends the hot statements straight to it
    #: (``flows.ledger.driver`` on SQLite, ``flows.ledger.pgdriver`` on PostgreSQL): see :meth:`execute`
    driver: Any = None
    fast: Any = None
    #: the lane this transaction appends to (held by it alone until it ends)
    lane: int = 1
    #: PostgreSQL, per run: lock the rows of the runs it changes (:meth:`hold_run`); NOWAIT in a batch
    per_run: str | None = None
    _last: tuple[int, str] | None = None  # the lane's head: pos, hash
    _seq: int = 0  # SQLite: the last seq
    _seqs: list[int] | None = None  # PostgreSQL: seqs taken from the sequence, not used yet
    _held_runs: set[str] | None = None
    _fresh: bool = False  # the seqs were taken since the last run was locked (first_held)
    #: records were appended to a writers' lane (not a checkpoint): a service folds them into one soon
    #: (``Ledger.keep_checkpoints``)
    appended: bool = False
    #: records appended inside :meth:`held`, inserted when it ends
    _held: list[dict[str, Any]] | None = None
    #: PostgreSQL, a transaction of its own (not a batch's): inserts sent with its COMMIT (:meth:`defer`)
    deferred: list[tuple[Any, list[dict[str, Any]]]] | None = None

    # --- the hot statements: straight to the driver (flows.ledger.driver, flows.ledger.pgdriver), same
    # rows, same errors; without a driver (tests of the plain path) through SQLAlchemy -------------

    @property
    def sqlite(self) -> bool:
        return self.fast is fast

    def execute(self, statement: Any, params: dict[str, Any]) -> None:
        """Execute a built insert, update or delete with these parameters."""
        if self.driver is None:
            self.conn.execute(statement, params)
        else:
            self.fast.execute(self.driver, statement, params)

    def executemany(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        """Execute a built insert for each row (all rows have the same keys)."""
        if not rows:
            return
        if self.driver is None:
            self.conn.execute(statement, rows)
        else:
            self.fast.executemany(self.driver, statement, rows)

    def defer(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        """:meth:`executemany`, for rows nothing in this transaction reads afterwards: on PostgreSQL, in a
        transaction of its own, they go with its ``COMMIT``, in one round trip (:meth:`commit_deferred`); elsewhere
        (SQLite, a batch, whose later calls may read them) now."""
        if self.deferred is None:
            self.executemany(statement, rows)
        elif rows:
            self.deferred.append((statement, rows))

    def commit_deferred(self) -> None:
        """PostgreSQL: the deferred inserts and ``COMMIT`` in one round trip (then the connection's own commit has
        nothing to do). Nothing deferred: nothing done here."""
        if self.deferred:
            inserts, self.deferred = self.deferred, None
            self.fast.commit(self.driver, inserts)

    def first(self, statement: Any, params: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
        """The first row of a built select, as a tuple (None when there is none); select no times this way."""
        if self.driver is None:
            row = self.conn.execute(statement, params or {}).first()
            return None if row is None else tuple(row)
        return self.fast.first(self.driver, statement, params or {})

    def append(self, kind: str, run_id: str | None = None, step_id: str | None = None,
               actor: str | None = None, at: datetime | None = None, **data: Any) -> int:
        """Append one record to the chain; returns its sequence number."""
        return self.append_text(kind, run_id, step_id, actor, at or self.clock.now(), dumps(data))

    def append_text(self, kind: str, run_id: str | None, step_id: str | None, actor: str | None, at: datetime,
                    text: str) -> int:
        """:meth:`append` with the data already written as canonical JSON (``dumps``)."""
        if self._last is None:
            self._read_head()
        seq = self._next_seq()
        pos, prev = self._last[0] + 1, self._last[1]  # type: ignore[index]
        self.appended = self.appended or self.lane != CHECKPOINT_LANE
        digest = record_hash(prev, seq, at, run_id, step_id, kind, actor, text, self.lane, pos)
        row = {"seq": seq, "at": at, "run_id": run_id, "step_id": step_id, "kind": kind, "actor": actor,
               "data": text, "prev_hash": prev, "hash": digest, "chain": self.lane, "pos": pos}
        if self._held is not None:
            self._held.append(row)
        else:
            self.execute(_INSERT_RECORD, row)
        self._last = (pos, digest)
        return seq

    def lane_heads(self) -> dict[int, tuple[int, str]]:
        """The head (place, hash) of every writers' lane that has a record (on PostgreSQL in one statement)."""
        if self.conn.dialect.name == "sqlite":
            found = {lane: self.first(_LANE_HEAD, {"_chain": lane}) for lane in range(1, LANES + 1)}
            return {lane: (head[0], head[1]) for lane, head in found.items() if head is not None}
        lanes, places, hashes = self.first(_PG_LANE_HEADS, {"lanes": LANES})  # type: ignore[misc]
        return dict(zip(lanes or [], zip(places or [], hashes or [], strict=True), strict=True))

    def _read_head(self) -> None:
        """The lane's head (and, on SQLite, the last seq; on PostgreSQL, a few seqs), in one go."""
        if self.sqlite:
            row = self.first(_LANE_HEAD, {"_chain": self.lane})
            self._seq = self.first(_MAX_SEQ)[0] or 0  # type: ignore[index]
        else:
            found = self.first(_PG_HEAD, {"chain": self.lane, "n": _SEQ_BLOCK})
            row = None if found[0] is None else (found[0], found[1])  # type: ignore[index]
            self._seqs = list(reversed(found[2]))  # type: ignore[index]
        self._last = (row[0], row[1]) if row else (0, GENESIS)

    def _next_seq(self) -> int:
        if self.sqlite:
            self._seq += 1
            return self._seq
        if not self._seqs:
            self._seqs = list(reversed(self.first(_PG_SEQS, {"n": _SEQ_BLOCK})[0]))  # type: ignore[index]
        return self._seqs.pop()

    def hold_run(self, run_id: str) -> None:
        """Before reading a run to change it: wait until no other transaction is changing it, and keep
        others from it until this one ends (PostgreSQL, per run: its row, ``FOR UPDATE``; in a batch
        ``NOWAIT``: an error, so the batch's calls run again one by one). Elsewhere every writer is
        alone already: nothing to do."""
        if self.per_run is None or (self._held_runs is not None and run_id in self._held_runs):
            return
        self.first_held(_HOLD_RUN[self.per_run], {"id": run_id})
        self.held_run(run_id)

    def first_held(self, statement: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a built ``SELECT … FOR UPDATE`` of runs (its first column never NULL); the caller then
        calls :meth:`held_run` for the run it found. On PostgreSQL the lane's head and fresh seqs come in the same
        round trip, read once the rows are locked (the lane is this transaction's already)."""
        if self.fast is None or self.sqlite:
            return self.first(statement, params)
        row, head, seqs = self.fast.first_held(self.driver, statement, params, self.lane, _SEQ_BLOCK)
        self._took(head, seqs, fresh=row is not None)
        return row

    def took_head(self, head: tuple[int, str] | None, seqs: list[int]) -> None:
        """The lane's head (place, hash; None when empty) and seqs, read once its lock was held, before any run was
        (``Ledger.transaction(head=True)``)."""
        self._took(head, seqs, fresh=False)

    def _took(self, head: tuple[int, str] | None, seqs: list[int], fresh: bool) -> None:
        """What a statement that locked runs brought back: the lane's head (place, hash; None when empty) and seqs
        taken after the lock (``fresh``: since a run was locked)."""
        if self._last is None:  # else this transaction appended to its lane already: it knows the head
            self._last = head or (0, GENESIS)
        self._seqs, self._fresh = list(reversed(seqs)), fresh

    def hold_and_append(self, statement: Any, params: dict[str, Any], kind: str, actor: str | None, at: datetime,
                        data: dict[str, Any], count: str) -> tuple[Any, ...] | None:
        """A statement that holds a run and counts on it (``UPDATE runs … RETURNING id, <count>``, the run held
        ``FOR UPDATE``; the count an integer), and a record of ``kind`` on that run whose data is ``data`` with
        ``count`` set to the count it returned (replacing any ``count`` in ``data``). Its row (run id, count), or
        None: no run found, nothing appended.

        On PostgreSQL in one statement (``pgdriver.first_held_appending``): the server puts the count in the
        record's data and makes its hash from the text :func:`record_hash` hashes, cut here where the server's
        values go (its seq, run, count and place). Otherwise the statement, then :meth:`append`."""
        if self.fast is None or self.sqlite or self._held is not None:
            row = self.first_held(statement, params)
            if row is not None:
                self.held_run(row[0])
                self.append(kind, row[0], None, actor=actor, at=at, **{**data, count: row[1]})
            return row
        found = self.fast.first_held_appending(self.driver, statement, params, chain=self.lane, n=_SEQ_BLOCK,
                                               n_new=NEW_RUN_SEQS, genesis=GENESIS,
                                               record={"_at": at, **record_pieces(kind, actor, at, data, count)})
        run_id, counted, pos, digest, seqs, head_pos, head_hash = found
        if run_id is None:  # as first_held leaves it: the head known, seqs to spare
            self._took(None if head_pos is None else (head_pos, head_hash), seqs, fresh=False)
            return None
        self._last = (pos, digest)
        self.appended = True  # the server appended it (its record on the run it found)
        self._took(None, seqs[1:], fresh=False)
        self._held_runs = (self._held_runs or set()) | {run_id}
        return run_id, counted

    def held_run(self, run_id: str) -> None:
        """``run_id``'s row was locked by a statement of the caller's (``FOR UPDATE``, :meth:`first_held`)."""
        self._held_runs = (self._held_runs or set()) | {run_id}
        if not self._fresh:
            self._seqs = None  # the run's records take seqs after whoever changed it before: in order, per run
        self._fresh = False

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
        self._held, last, seq, seqs = [], self._last, self._seq, list(self._seqs or [])
        try:
            yield
            self.defer(_INSERT_RECORD, self._held)
        except BaseException:
            # none of them was inserted: the chain (and the seqs) go on from where they were
            self._last, self._seq, self._seqs = last, seq, seqs
            raise
        finally:
            self._held = None
