"""``kind: wait`` — a pause in the playbook, kept as a durable timer (no process waits)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Literal

from flows.clock import scaled
from flows.language.durations import format_duration
from flows.language.fields import Duration
from flows.language.steps.base import Activation, StepBase, StepKind


class WaitStep(StepBase):
    """Wait for a while (a durable timer, no process held)."""

    span_field: ClassVar[str] = "duration"
    judged: ClassVar[bool] = False  # its timer ends it at its due instant, give or take scheduling: no deadline

    kind: Literal["wait"] = "wait"
    duration: Duration

    def span(self) -> timedelta:
        """A wait takes its ``duration`` (whatever its ``due``)."""
        return self.duration


def until(step: WaitStep, ready_at: datetime, speed: float) -> datetime:
    """The wall-clock instant the wait ends, on a run compressed ``speed`` times."""
    return ready_at + scaled(step.duration, speed)


def activate(step: WaitStep, act: Activation) -> None:
    """The step waits; a timer finishes it when the (compressed) duration has passed."""
    act.wait_until(until(step, act.now, act.speed))


def summary(step: WaitStep) -> str:
    """``wait 30m``."""
    return f"wait {format_duration(step.duration)}"


KIND = StepKind(model=WaitStep, activate=activate, summary=summary)
