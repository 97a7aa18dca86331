"""The PostgreSQL fast path: a statement built once, sent straight to psycopg (the twin of ``driver``, SQLite's).

The same SQL SQLAlchemy would send (compiled once per statement shape for the psycopg dialect),
times converted to UTC as ``schema.UtcTime`` converts them, without SQLAlchemy's execution per
statement: on PostgreSQL that was ~0.9 ms of the API's CPU per alert (docs/benchmarks.md, "Team
ingest"). psycopg prepares a statement on the server once it has run a few times on a connection.
Errors are SQLAlchemy's types (``IntegrityError`` for a constraint, ``OperationalError`` for a lock
not available…), exactly as on the plain path. Selects come back as the driver's tuples.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from flows.ledger.schema import RECORDS_SEQ, in_utc

_PG = pg_dialect.dialect()


@lru_cache(maxsize=256)
def compiled(statement: Any, keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """A built statement's PostgreSQL text (``%(name)s`` placeholders) for these parameter names, and the
    values of the parameters the statement holds itself (a ``LIMIT 1``)."""
    done = statement.compile(dialect=_PG, column_keys=list(keys))
    return done.string, {k: v for k, v in done.params.items() if k not in keys}


def _values(fixed: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    values = {**fixed, **params} if fixed else dict(params)
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = in_utc(value)
    return values


def _translated(exc: psycopg.Error, sql: str, params: Any, many: bool = False) -> BaseException:
    """The SQLAlchemy error SQLAlchemy itself raises for this driver error (IntegrityError, OperationalError…)."""
    return sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error, dialect=_PG, ismulti=many)


def execute(driver: Any, statement: Any, params: dict[str, Any]) -> None:
    """Execute a built insert, update or delete with these parameters."""
    sql, fixed = compiled(statement, tuple(params))
    values = _values(fixed, params)
    try:
        driver.execute(sql, values)
    except psycopg.Error as exc:
        raise _translated(exc, sql, values) from exc


def _jsonable(value: Any) -> str:
    if isinstance(value, datetime):
        return in_utc(value).isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


@lru_cache(maxsize=64)
def _recordset_sql(table: str, keys: tuple[str, ...]) -> str:
    quote = _PG.identifier_preparer.quote
    columns = ", ".join(quote(key) for key in keys)
    return (f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} "
            f"FROM json_populate_recordset(NULL::{quote(table)}, %s::json)")


#: from this many rows an insert goes as one statement whose one parameter is the rows as JSON
RECORDSET_FROM = 3


def _insert(driver: Any, statement: Any, rows: list[dict[str, Any]]) -> str:
    """Send a built insert of ``rows`` (all with the same keys); the SQL sent (for an error).

    Three rows or more go as one statement of one parameter, the rows as a JSON array read by the
    table's own column types (``json_populate_recordset``): psycopg's work is per statement and
    per parameter, and a new run inserts ~40 rows (docs/benchmarks.md, "A new run on PostgreSQL")."""
    keys = tuple(rows[0])
    sql, fixed = compiled(statement, keys)
    if len(rows) >= RECORDSET_FROM and statement.is_insert and not fixed:  # a plain insert (values of its own: a row
        # at a time)
        try:
            text = json.dumps(rows, default=_jsonable, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError):
            pass  # a value JSON cannot carry as it is (NaN…): a statement per row
        else:
            sql = _recordset_sql(statement.table.name, keys)
            driver.execute(sql, (text,))
            return sql
    with driver.cursor() as cursor:
        cursor.executemany(sql, [_values(fixed, row) for row in rows])
    return sql


def executemany(driver: Any, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Execute a built insert for each row (all rows have the same keys), in one round trip."""
    try:
        _insert(driver, statement, rows)
    except psycopg.Error as exc:
        raise _translated(exc, compiled(statement, tuple(rows[0]))[0], rows, many=True) from exc


def commit(driver: Any, inserts: list[tuple[Any, list[dict[str, Any]]]]) -> None:
    """Built inserts (statement, rows) and then ``COMMIT``, in one round trip (a pipeline: the server's error,
    if any, comes when it ends, and the transaction is rolled back)."""
    sent: list[str] = []
    try:
        with driver.pipeline():
            for statement, rows in inserts:
                sent.append(_insert(driver, statement, rows))
            driver.execute("COMMIT", prepare=False)
    except psycopg.Error as exc:
        raise _translated(exc, "; ".join([*sent, "COMMIT"]), [rows for _, rows in inserts], many=True) from exc


def first(driver: Any, statement: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of a built select, as the driver's tuple (None when there is none)."""
    sql, fixed = compiled(statement, tuple(params))
    values = _values(fixed, params)
    try:
        return driver.execute(sql, values).fetchone()  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise _translated(exc, sql, values) from exc


def begin(driver: Any, sql: str, *more: str) -> list[tuple[Any, ...]]:
    """``BEGIN`` and a first statement, and any ``more`` after it (SQL with literals only: they go as one simple
    query), in one round trip on a connection in autocommit mode; each statement's first row. Each statement reads
    in a snapshot of its own, taken when it starts (READ COMMITTED): one after a lock sees what its last holder
    committed."""
    try:
        cursor = driver.execute("; ".join(["BEGIN", sql, *more]), prepare=False)
        rows = []
        while cursor.nextset():
            rows.append(cursor.fetchone())
        return rows
    except psycopg.Error as exc:
        raise _translated(exc, "; ".join([sql, *more]), ()) from exc


def head_sql(chain: int, n: int) -> str:
    """The place and hash of lane ``chain``'s last record (NULLs when it has none) and ``n`` seqs, with literals
    only (for :func:`begin`)."""
    return (f"SELECT h.pos, h.hash, {_seqs().replace('%(_n)s', str(int(n)))} FROM (SELECT 1) AS one "
            f"LEFT JOIN LATERAL {_head().replace('%(_chain)s', str(int(chain)))} AS h ON true")


def alive(driver: Any) -> bool:
    """The connection still answers (``SELECT 1``)."""
    if driver.closed:
        return False
    try:
        driver.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _seqs(when: str = "", n: str = "_n") -> str:
    """``%(<n>)s`` seqs from the records' sequence, as an array (none taken unless ``when``, an SQL condition)."""
    return f"ARRAY(SELECT nextval('{RECORDS_SEQ}'::regclass) FROM generate_series(1, %({n})s){when})"


def _head(when: str = "") -> str:
    """The place and hash of lane ``%(_chain)s``'s last record (not read unless ``when``, an SQL condition)."""
    return f"(SELECT pos, hash FROM records WHERE chain = %(_chain)s{when} ORDER BY pos DESC LIMIT 1)"


@lru_cache(maxsize=32)
def _held_sql(statement: Any, keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    sql, fixed = compiled(statement, keys)
    # the CTE's rows are locked before the outer row is made: the seqs are taken after the lock (in order, per
    # run); the lane's head is read in this statement's snapshot, taken after the caller's lane lock
    return (f"WITH held AS ({sql}) SELECT held.*, h.pos, h.hash, {_seqs()} FROM (SELECT 1) AS one "
            f"LEFT JOIN held ON true LEFT JOIN LATERAL {_head()} AS h ON true", fixed)


def first_held(driver: Any, statement: Any, params: dict[str, Any], chain: int,
               n: int) -> tuple[tuple[Any, ...] | None, tuple[int, str] | None, list[int]]:
    """A ``SELECT … FOR UPDATE``'s first row (None when none; its first column is never NULL), with the head of
    lane ``chain`` (place, hash; None when empty) and ``n`` seqs, in one round trip."""
    sql, fixed = _held_sql(statement, tuple(params))
    values = {**_values(fixed, params), "_chain": chain, "_n": n}
    try:
        found = driver.execute(sql, values).fetchone()
    except psycopg.Error as exc:
        raise _translated(exc, sql, values) from exc
    row = None if found[0] is None else tuple(found[:-3])
    head = None if found[-3] is None else (found[-3], found[-2])
    return row, head, found[-1]


@lru_cache(maxsize=32)
def _appending_sql(statement: Any, keys: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    sql, fixed = compiled(statement, keys)
    # held: the run found and locked, its count; r: the lane's head (this statement's snapshot, taken after the
    # caller's lane lock, sees this transaction's own records) and seqs taken once the run is locked (the subquery
    # refers to held's row, so it runs after it, and not at all when no run is found); d: the record's place and hash
    return (f"WITH held(run, n) AS ({sql}), "
            f"r AS (SELECT held.run, held.n, {_seqs(' WHERE held.run IS NOT NULL')} AS seqs, "
            "COALESCE(h.pos, 0) + 1 AS pos, COALESCE(h.hash, %(_genesis)s) AS prev FROM held "
            f"LEFT JOIN LATERAL {_head()} AS h ON true), "
            "d AS (SELECT r.*, encode(sha256(convert_to(r.prev || '|[' || r.seqs[1] || %(_at_text)s "
            "|| to_json(r.run)::text || %(_kind_to_count)s || r.n::bigint || %(_count_to_lane)s || %(_chain)s || ',' "
            "|| r.pos || ']', 'UTF8')), "
            "'hex') AS hash FROM r), "
            "ins AS (INSERT INTO records (seq, at, run_id, step_id, kind, actor, data, prev_hash, hash, chain, pos) "
            "SELECT d.seqs[1], %(_at)s, d.run, NULL, %(_kind)s, %(_actor)s, %(_prefix)s || d.n::bigint || %(_suffix)s, "
            "d.prev, d.hash, %(_chain)s, d.pos FROM d) "
            # no run found: the lane's head and seqs all the same, as first_held gives them (a new run follows)
            f"SELECT d.run, d.n, d.pos, d.hash, COALESCE(d.seqs, {_seqs(' WHERE d.run IS NULL', '_n_new')}), "
            "h.pos, h.hash "
            f"FROM (SELECT 1) AS one LEFT JOIN d ON true LEFT JOIN LATERAL {_head(' AND d.run IS NULL')} AS h ON true",
            fixed)


def first_held_appending(driver: Any, statement: Any, params: dict[str, Any], *, chain: int, n: int, n_new: int,
                         genesis: str, record: dict[str, Any]) -> tuple[Any, ...]:
    """An ``UPDATE runs … RETURNING id, <count>`` that holds a run (``FOR UPDATE``) and, in the same round trip, the
    record ``record`` describes appended to lane ``chain`` on the run it found (see ``Tx.hold_and_append``): the run,
    its count, the record's place and hash, the ``n`` seqs taken (the record has the first); when no run was found
    (the first four None), ``n_new`` seqs (for the new run that follows); then, in that case, the lane's head (place,
    hash; None when empty)."""
    sql, fixed = _appending_sql(statement, tuple(params))
    values = {**_values(fixed, params), **_values({}, record), "_chain": chain, "_n": n, "_n_new": n_new,
              "_genesis": genesis}
    try:
        return driver.execute(sql, values).fetchone()  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise _translated(exc, sql, values) from exc


_ATTACH_ALONE = ("SELECT * FROM sop_attach(%(_key)s::text, %(_copies)s::integer, %(_now)s::timestamptz, "
                 "%(_lock)s::bigint, %(_lane_space)s::integer, %(_lane)s::integer, %(_lanes)s::integer, "
                 "%(_genesis)s::text, %(_kind)s::text, %(_actor)s::text, %(_prefix)s::text, %(_suffix)s::text, "
                 "%(_at_text)s::text, %(_kind_to_count)s::text, %(_count_to_lane)s::text)")


def attach_alone(driver: Any, values: dict[str, Any]) -> tuple[Any, ...] | None:
    """``sop_attach`` (migration 0015) on a connection in autocommit mode: the writers' locks, then the open run
    holding ``_key`` held, its repeats counted and its record appended, in one round trip and one transaction.
    The run, its count, the lane and place of the record and its hash; None when no run holds the key."""
    values = _values({}, values)
    try:
        return driver.execute(_ATTACH_ALONE, values).fetchone()  # type: ignore[no-any-return]
    except psycopg.Error as exc:
        raise _translated(exc, _ATTACH_ALONE, values) from exc


def selected(driver: Any, queries: list[tuple[Any, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Built selects (statement, parameters) in one round trip (a pipeline): each one's rows, as dicts by column."""
    cursors = []
    sql = ""
    try:
        with driver.pipeline():
            for statement, params in queries:
                sql, fixed = compiled(statement, tuple(params))
                cursors.append(driver.execute(sql, _values(fixed, params)))
        out = []
        for cursor in cursors:
            names = [column.name for column in cursor.description]
            out.append([dict(zip(names, row, strict=True)) for row in cursor.fetchall()])
        return out
    except psycopg.Error as exc:
        raise _translated(exc, sql, [params for _, params in queries]) from exc
