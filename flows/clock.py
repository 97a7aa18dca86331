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
