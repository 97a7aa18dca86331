"""One line per run (``sop audit runs``): SOP and version, trigger, start, end, outcome, deadline, escalations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from flows.audit.model import RunAudit


@dataclass
class RunLine:
    """A run as one row; times are UTC, durations SOP seconds."""

    run: str
    sop: str
    version: str | None
    sop_hash: str
    sop_class: str
    trigger: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    deadline: str  # met | missed | pending | none | n/a
    escalations: int
    repeats: int
    speed: float
    duration_s: float | None  # SOP time from start to end (or to now while open)
    drill: bool = False  # started as a drill (its trigger's kind); last, so earlier exports still read back
    # who acknowledged, and how fast: the quarter's answer in one file, not one `sop audit show` per run
    acknowledged_by: str | None = None  # the first answer by a person (where the time to acknowledge ends)
    tta_s: float | None = None  # time to acknowledge, SOP seconds

    @classmethod
    def of(cls, run: RunAudit, now: datetime) -> RunLine:
        return cls(run=run.id, sop=run.sop_id, version=run.version, sop_hash=run.sop_hash, sop_class=run.sop_class,
                   trigger=run.trigger_text(), started_at=run.started_at, ended_at=run.ended_at,
                   outcome=run.outcome_text, deadline=run.deadline(now), escalations=run.escalations,
                   repeats=run.repeats, speed=run.speed,
                   duration_s=run.sop_seconds(run.started_at, run.ended_at or now), drill=run.is_drill,
                   acknowledged_by=run.acknowledged.actor if run.acknowledged else None,
                   tta_s=run.time_to_acknowledge)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUN_COLUMNS = [f.name for f in fields(RunLine)]


def run_lines(runs: list[RunAudit], now: datetime) -> list[RunLine]:
    return [RunLine.of(run, now) for run in runs]
