"""A service loop's view of the ledger's database going away: how to tell it, how to wait, what to log.

The timer service, the pager and the nudger each loop on the ledger. When its database stops
(a restart, a failover, a network cut), every pass fails the same way: logged with its
traceback each time, a minute of outage was thousands of tracebacks and megabytes of log, and
each pass hammered a server on its way back. :class:`Outage` logs the first failure in one
line, then one line every ``REMIND_S`` while it lasts, and once when the database answers
again; between passes it waits longer and longer (up to ``MAX_WAIT_S``). An error that is not
the database's keeps its traceback (a bug of ours).
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from flows.ledger.url import LedgerUnavailable

#: the longest wait between two passes while the database is away, and how often a line says it still is
MAX_WAIT_S, REMIND_S = 10.0, 60.0


#: SQLite's OperationalError messages that say the file cannot be used now (its others are our bugs: a missing
#: column or table, a syntax error, which SQLite also reports as OperationalError)
_SQLITE_AWAY = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full", "not a database")


def database_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the ledger's database cannot be reached or used now (down, restarting, a connection cut,
    SQLite's file locked past its wait): the service's state, not a bug, and worth another try. A query of ours
    that SQLite refuses (``no such column``) is a bug, whatever class SQLite gives it."""
    import sqlite3

    if isinstance(exc, LedgerUnavailable):
        return True
    cause = getattr(exc, "orig", None) if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(cause, sqlite3.Error):
        return isinstance(cause, sqlite3.OperationalError) and any(word in str(cause).lower() for word in _SQLITE_AWAY)
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


class Outage:
    """One loop's failures (``event``: its log event, e.g. ``timers_loop_error``), for :meth:`failed` and :meth:`ok`."""

    def __init__(self, log: logging.Logger, event: str, base_wait: float, also: tuple[type[BaseException], ...] = ()):
        """``also``: more errors that mean a server this loop needs is away (the nudger's Prefect: httpx's)."""
        self.log, self.event, self.base_wait, self.also = log, event, base_wait, also
        self.since: float | None = None
        self.passes = 0
        self._told = 0.0

    def failed(self, exc: BaseException) -> float:
        """Log ``exc`` as this loop should; returns how long to wait before the next pass."""
        if not (database_away(exc) or isinstance(exc, self.also)):
            self.log.error("event=%s", self.event, exc_info=exc)
            return self.base_wait
        now = time.monotonic()
        self.passes += 1
        if self.since is None:
            self.since, self._told = now, now
            self.log.error("event=%s cause=unreachable error=%s detail=%r (retrying; one line a minute while it "
                           "lasts)", self.event, type(exc).__name__, first_line(exc))
        elif now - self._told >= REMIND_S:
            self._told = now
            self.log.error("event=%s cause=unreachable for_s=%.0f passes=%d", self.event, now - self.since,
                           self.passes)
        return min(MAX_WAIT_S, max(self.base_wait, 0.1) * 2 ** min(self.passes, 10))

    def ok(self) -> None:
        """A pass went through: say so once after an outage."""
        if self.since is not None:
            self.log.warning("event=%s_recovered after_s=%.1f passes=%d", self.event.removesuffix("_error"),
                             time.monotonic() - self.since, self.passes)
            self.since, self.passes = None, 0


def first_line(exc: BaseException) -> str:
    """An error's first line, at most 200 characters: a log line's detail."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
