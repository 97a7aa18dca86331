"""What an audit is asked about: the window of runs (``--since``/``--until``), the class, and
:class:`AuditError`, raised when a question cannot be answered as asked (a message and a hint).

Nothing here reads the ledger: :mod:`flows.audit.queries` reads the runs these pick.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.clock import local_time
from flows.language.durations import parse_duration
from flows.ledger import utc
from flows.ledger.schema import records

CLASSES = ("complaint", "outage", "policy", "routine")
#: what a report does with drills (runs whose trigger is a drill, :func:`flows.audit.model.is_drill`)
DRILLS = ("include", "exclude", "only")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AuditError(Exception):
    """A question the audit cannot answer as asked: a message and a hint for the user."""

    def __init__(self, message: str, hint: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: the filter it is about (``class``, ``drills``, ``sop``), where it is one
        self.field = field


class NotFound(AuditError):
    """The run or SOP asked about is not in the ledger."""


@dataclass(frozen=True)
class Window:
    """Runs started at or after ``since`` and before ``until`` (either open), UTC."""

    since: datetime | None = None
    until: datetime | None = None

    def contains(self, at: datetime) -> bool:
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    def describe(self, zone: str = "UTC") -> str:
        """The window in words, its ends in ``zone`` (the zone the table below it shows times in)."""
        since = _instant(self.since, zone) if self.since else "the first run"
        until = _instant(self.until, zone) if self.until else "now"
        return f"runs started from {since} until {until} (exclusive)"


def recorded(conn: Connection, kinds: list[str], within: Window | None = None) -> Iterator[tuple[Any, datetime, dict[str, Any]]]:
    """The records of ``kinds`` in the window, in the order they came: each row (seq, at, kind, actor, data), its
    time (aware, UTC) and its data read (what ``sop audit actions``, ``refused``… list one line each)."""
    within = within or Window()
    rows = conn.execute(sa.select(records.c.seq, records.c.at, records.c.kind, records.c.actor, records.c.data)
                        .where(records.c.kind.in_(kinds)).order_by(records.c.seq))
    for row in rows:
        at = utc(row.at)
        if within.contains(at):  # type: ignore[arg-type]
            yield row, at, json.loads(row.data)  # type: ignore[misc]


def _instant(at: datetime, zone: str) -> str:
    """A window's end as a person reads it: ``2026-12-05 07:36 UTC``, ``2026-12-05 15:36 CST (UTC+8)`` (to the
    second when it has seconds)."""
    return local_time(at, zone, seconds=bool(at.second or at.microsecond))


def parse_instant(text: str, now: datetime, *, end: bool = False, zone: str = "UTC") -> datetime:
    """``2026-03-01`` (a whole day of ``zone``: its start, or with ``end`` the next midnight), an ISO time (no
    offset: ``zone``'s wall time, as the pages and the terminal show times), or a duration back from now (``7d``)."""
    value = text.strip()
    where = ZoneInfo(zone)
    if _DATE.match(value):
        try:
            day = datetime.combine(datetime.fromisoformat(value).date(), time(0), tzinfo=where)
        except ValueError as exc:  # 2026-02-30: a date's shape, no such day
            raise AuditError(f"`{text}` is not a day of the calendar ({exc})", "write a date such as 2026-03-01") from None
        try:
            return (datetime.combine(day.date() + timedelta(days=1), time(0), tzinfo=where) if end else day
                    ).astimezone(UTC)
        except OverflowError:  # --until 9999-12-31 (the day after is past any date Python has), 0001-01-01 east of UTC
            return (datetime.min if day.year == 1 else datetime.max).replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return now - parse_duration(value, limit=None)  # a window, not a timer: years back are fine
        except OverflowError:  # 99999999d: before the year 1
            return datetime.min.replace(tzinfo=UTC)
        except ValueError:
            raise AuditError(f"`{text}` is neither a date, a time nor a duration",
                             "write 2026-03-01, 2026-03-01T09:30, 2026-03-01T09:30+08:00 or 7d (7 days ago)") from None
    try:
        return (parsed.replace(tzinfo=where) if parsed.tzinfo is None else parsed).astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00
        raise AuditError(f"`{text}` is out of range", "give a time between 0001 and 9999 in UTC") from None


def window(since: str | None, until: str | None, now: datetime, zone: str = "UTC") -> Window:
    """The window of ``--since``/``--until`` (an ``--until`` date includes that whole day); dates and times without
    an offset are ``zone``'s."""
    out = Window(parse_instant(since, now, zone=zone) if since else None,
                 parse_instant(until, now, end=True, zone=zone) if until else None)
    if out.since and out.until and out.since >= out.until:
        raise AuditError(f"--since ({out.since.isoformat()}) is not before --until ({out.until.isoformat()})",
                         "swap them, or widen the window")
    return out


def check_class(sop_class: str | None) -> str | None:
    if sop_class is not None and sop_class not in CLASSES:
        raise AuditError(f"unknown class `{sop_class}`", f"one of {', '.join(CLASSES)}", "class")
    return sop_class


def check_drills(drills: str | None) -> str:
    """``include`` (the default: drills count like any run), ``exclude`` or ``only``."""
    if drills is None or drills == "":
        return "include"
    if drills not in DRILLS:
        raise AuditError(f"unknown drills choice `{drills}`", "one of include (count them), exclude (leave them out), "
                                                             "only (drills alone)", "drills")
    return drills


def check_sop(sop_id: str | None, ran: set[str], known: set[str] | frozenset[str] = frozenset()) -> str | None:
    """An SOP asked about: one that ran (``ran``: the SOPs with runs in the ledger) or is in the library (``known``:
    none of its runs yet, an empty answer); anything else is a typo, said with the closest names."""
    if sop_id is None or sop_id in ran or sop_id in known:
        return sop_id
    import difflib

    names = sorted(ran | set(known))
    close = difflib.get_close_matches(sop_id, names, n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else f"SOPs: {', '.join(names) or 'none yet'}"
    raise AuditError(f"no SOP `{sop_id}`: no run of it in the ledger, and no SOP of that id loaded from sops/",
                     hint, "sop")


def drills_kept(drills: str, drill: bool) -> bool:
    """Whether a run (a drill or not) is kept under ``drills`` (checked by :func:`check_drills`)."""
    return drills == "include" or (drills == "only") == drill


__all__ = ["CLASSES", "DRILLS", "AuditError", "NotFound", "Window", "check_class", "check_drills", "check_sop", "drills_kept",
           "parse_instant", "window"]
