"""Time, injected: the engine never reads the wall clock ad hoc, so tests and drills can steer it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ManualClock:
    """A clock moved by hand, never backwards (tests and benchmarks replay runs on it)."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

    def set(self, at: datetime) -> None:
        assert at >= self.at, f"time does not go back ({at} < {self.at})"
        self.at = at


def scaled(duration: timedelta, speed: float) -> timedelta:
    """A duration of SOP time as wall time on a run compressed ``speed`` times."""
    return duration / speed


def sop_time(wall: timedelta, speed: float) -> timedelta:
    """Wall time on a run compressed ``speed`` times as SOP time (the inverse of :func:`scaled`)."""
    return wall * speed


#: the least wall time a compressed time limit leaves a step (unless its own limit is shorter): a program or a
#: remote system answers in real time whatever the run's speed, so a drill at 600x must not cut a call that
#: answers in 200 ms (the limit of 30s would be 50 ms); a step that hangs still costs at most this much
TIMEOUT_FLOOR = timedelta(seconds=1)


def scaled_timeout(limit: timedelta, speed: float) -> timedelta:
    """A step's time limit of SOP time as wall time on a run compressed ``speed`` times: :func:`scaled`, but
    never under :data:`TIMEOUT_FLOOR` (nor over ``limit`` because of the floor: at speed 1 a limit is itself)."""
    return max(scaled(limit, speed), min(limit, TIMEOUT_FLOOR))


def local_time(instant: datetime, zone: str, *, seconds: bool = False) -> str:
    """``instant`` as people of ``zone`` read it, with a label no reader can take for another zone:
    ``2026-12-05 14:20 CST (UTC+8)``: an abbreviation alone is ambiguous (CST is China's and the US
    Central's, IST India's, Ireland's and Israel's), so the offset is always said; a zone without an
    abbreviation of its own shows the offset alone (``UTC+4`` for Asia/Dubai), UTC as ``UTC``."""
    local = in_zone(instant, zone)
    return f"{local.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} {zone_label(local)}"


def in_zone(instant: datetime, zone: str) -> datetime:
    """``instant`` on ``zone``'s wall clock; in UTC for the first or last day Python has (an audit window "until
    9999-12-31"), which no zone's offset can move."""
    from zoneinfo import ZoneInfo

    try:
        return instant.astimezone(ZoneInfo(zone))
    except OverflowError:
        return instant.astimezone(UTC)


def zone_label(local: datetime) -> str:
    """How :func:`local_time` names the zone of ``local`` (an aware time): ``CST (UTC+8)``, ``UTC+4``, ``UTC``."""
    offset = local.utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    utc = f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")
    name = local.tzname() or ""
    return f"{name} ({utc})" if name.isalpha() else utc
