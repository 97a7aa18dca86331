"""``kind: wait`` — a pause in the playbook, kept as a durable timer (no process waits)."""

from __future__ import annotations

from datetime import datetime

from flows.clock import scaled
from flows.language.spec import WaitStep


def until(step: WaitStep, ready_at: datetime, speed: float) -> datetime:
    """The wall-clock instant the wait ends, on a run compressed ``speed`` times."""
    return ready_at + scaled(step.duration, speed)
