"""What every step kind gets and may raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class StepFailed(Exception):
    """An automated step did not do its job; ``outputs`` keeps what it did learn (status, stderr…)."""

    def __init__(self, message: str, outputs: dict[str, Any] | None = None):
        super().__init__(message)
        self.outputs = outputs or {}


@dataclass
class StepContext:
    """The template variables of the run plus the services a step may use."""

    variables: dict[str, Any]
    run_id: str
    pager: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
