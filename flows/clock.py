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


def scaled(duration: timedelta, speed: float) -> timedelta:
    """A duration of SOP time as wall time on a run compressed ``speed`` times."""
    return duration / speed
