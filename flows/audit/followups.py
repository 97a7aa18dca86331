"""Follow-ups as the audit reads them: each run's links to the runs its end started, and the figure
"follow-ups done within their window".

From the records alone: a follow-up run's ``run_started`` trigger (``kind: follow_up``) names
its parent run and its window's end (``within`` from the parent's end); the parent's
``follow_up_started`` / ``follow_up_skipped`` / ``follow_up_refused`` records say what its end
did about each follow-up (:class:`FollowUpLink`). A follow-up run is judged against its window
(:func:`verdict`): **on time** when it finished done by the window's end, **late** when it
finished done after it, **open** while not ended and before it, **overdue** while not ended and
past it, **not done** when it was cancelled, failed or rejected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from flows.audit.model import parse_time
from flows.language.presentation import skip_reason

ON_TIME, LATE, OPEN, OVERDUE, NOT_DONE = "on_time", "late", "open", "overdue", "not_done"
VERDICTS = (ON_TIME, LATE, OPEN, OVERDUE, NOT_DONE)
DEFINITION = ("a run started by another run's end (follow_ups), judged against its window (within, from that end): "
              "on time = finished done by the window's end; late = finished done after it; open = not ended, "
              "window not over; overdue = not ended, window over; not done = cancelled, failed or rejected. "
              "On time % = on time / (on time + late + overdue)")


@dataclass(slots=True)
class FollowUpLink:
    """What a run's end did about one of its SOP's follow-ups: started (or attached to) a run, skipped, refused."""

    seq: int
    at: datetime
    kind: str  # follow_up_started | follow_up_skipped | follow_up_refused
    sop: str
    run: str | None = None
    attached: bool = False
    reason: str | None = None
    window_ends_at: datetime | None = None
    #: the ``when`` that was false (skipped): shown as code on a line of its own, the reason says it in words
    condition: str | None = None

    @property
    def state(self) -> str:
        """started | attached | skipped | refused."""
        if self.kind == "follow_up_started":
            return "attached" if self.attached else "started"
        return self.kind.removeprefix("follow_up_")

    @classmethod
    def of(cls, seq: int, at: datetime, kind: str, data: dict[str, Any]) -> FollowUpLink:
        """The link one record writes."""
        reason, condition = skip_reason(data)
        return cls(seq, at, kind, str(data.get("sop") or "?"), data.get("run"), bool(data.get("attached")),
                   reason, parse_time(data.get("window_ends_at")), condition)


def verdict(run: Any, now: datetime) -> str | None:
    """A run (``RunAudit``) against its follow-up window, as of ``now``; None for a run that is no follow-up."""
    window = run.window_ends_at
    if window is None:
        return None
    if run.status == "finished" and run.outcome == "done":
        return ON_TIME if run.ended_at is not None and run.ended_at <= window else LATE
    if run.status == "open":
        return OVERDUE if now > window else OPEN
    return NOT_DONE


@dataclass
class FollowUpFigures:
    """Follow-ups done within their window: of one SOP's runs' ends (``parent_sop``) started as ``sop``, or all."""

    parent_sop: str
    sop: str
    count: int = 0
    on_time: int = 0
    late: int = 0
    open: int = 0
    overdue: int = 0
    not_done: int = 0
    on_time_pct: float | None = None

    def add(self, judged: str) -> None:
        self.count += 1
        setattr(self, judged, getattr(self, judged) + 1)

    def done(self) -> FollowUpFigures:
        judged = self.on_time + self.late + self.overdue
        self.on_time_pct = round(self.on_time * 100 / judged, 1) if judged else None
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(judged: list[tuple[str, str, str]]) -> list[FollowUpFigures]:
    """(parent SOP, follow-up SOP, verdict) of each follow-up run → one row per pair, then the total (``all``)."""
    rows: dict[tuple[str, str], FollowUpFigures] = {}
    total = FollowUpFigures("all", "all")
    for parent_sop, sop, judgement in judged:
        rows.setdefault((parent_sop, sop), FollowUpFigures(parent_sop, sop)).add(judgement)
        total.add(judgement)
    if not rows:
        return []
    return [*(rows[k].done() for k in sorted(rows)), total.done()]


__all__ = ["DEFINITION", "LATE", "NOT_DONE", "ON_TIME", "OPEN", "OVERDUE", "VERDICTS", "FollowUpFigures",
           "FollowUpLink", "figures", "verdict"]
