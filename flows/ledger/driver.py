"""The SQLite fast path: a statement built once, sent straight to SQLite's driver.

The same SQL SQLAlchemy would send (compiled once per statement shape), times written as
SQLAlchemy writes them, without SQLAlchemy's execution per statement — most of a repeated
alert's cost (docs/benchmarks.md, "Figures moved from code comments"). Errors are SQLAlchemy's types
(``sqlalchemy.exc.IntegrityError`` for a constraint, ``OperationalError`` for a lock…),
exactly as on the plain path, so no caller needs to know which path ran its statement.
Selects come back as the driver's tuples: select no times this way.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

_SQLITE = sqlite_dialect.dialect()


def sqlite_time(value: datetime) -> str:
    """A time as the ledger writes a ``UtcTime`` to SQLite: its fields in UTC, with microseconds, no offset."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


@lru_cache(maxsize=256)
def compiled(statement: Any, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """A built statement's SQLite text for these parameter names, the order its ``?`` take them in,
    and the values of the parameters the statement holds itself (a ``LIMIT 1``)."""
    done = statement.compile(dialect=_SQLITE, column_keys=list(keys))
    names = tuple(done.positiontup or ())
    return done.string, names, {k: v for k, v in done.params.items() if k in names and k not in keys}


def _values(names: tuple[str, ...], fixed: dict[str, Any], params: dict[str, Any]) -> tuple[Any, ...]:
    if fixed:
        params = {**fixed, **params}
    return tuple(sqlite_time(v) if isinstance(v, datetime) else v for v in map(params.__getitem__, names))


def _translated(exc: sqlite3.Error, sql: str, params: Any, many: bool = False) -> BaseException:
    """The SQLAlchemy error SQLAlchemy itself raises for this driver error (IntegrityError, OperationalError…)."""
    return sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error, dialect=_SQLITE, ismulti=many)


def execute(driver: Any, statement: Any, params: dict[str, Any]) -> None:
    """Execute a built insert, update or delete with these parameters."""
    sql, names, fixed = compiled(statement, tuple(params))
    values = _values(names, fixed, params)
    try:
        driver.execute(sql, values)
    except sqlite3.Error as exc:
        raise _translated(exc, sql, values) from exc


def executemany(driver: Any, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Execute a built insert for each row (all rows have the same keys)."""
    sql, names, fixed = compiled(statement, tuple(rows[0]))
    values = [_values(names, fixed, row) for row in rows]
    try:
        driver.executemany(sql, values)
    except sqlite3.Error as exc:
        raise _translated(exc, sql, values, many=True) from exc


def first(driver: Any, statement: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of a built select, as the driver's tuple (None when there is none)."""
    sql, names, fixed = compiled(statement, tuple(params))
    values = _values(names, fixed, params)
    try:
        return driver.execute(sql, values).fetchone()
    except sqlite3.Error as exc:
        raise _translated(exc, sql, values) from exc
