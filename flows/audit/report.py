"""SLA compliance figures over audited runs: per SOP, per class, overall, and late steps by role.

The definitions (also in docs/audit.md, and printed in every report):

- **on time**: runs whose deadline was met ÷ runs whose deadline was met or missed. Runs
  without a deadline, still open before it, or cancelled before it are not counted.
- **time to acknowledge (TTA)**: from the run's first assignment (the first person asked
  to act) to the first answer by a person on any step ("I'll take it", an approval, done
  or rejected).
- **time to complete (TTC)**: from the run's start to its finish; open and cancelled runs
  are left out.
- **escalations per run**: ladder levels that fired (reminders included) ÷ runs.
- **late step**: a step with a due time whose verdict is *missed* (reported after it, timed
  out, or still open past it).

Medians are the middle value (the mean of the two middle values for an even count); p90
is the nearest-rank 90th percentile. Durations are SOP time in seconds (wall time × the
run's speed).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

from flows.audit.followups import DEFINITION as FOLLOW_UP_DEFINITION
from flows.audit.followups import FollowUpFigures
from flows.audit.followups import figures as follow_up_figures
from flows.audit.followups import verdict as follow_up_verdict
from flows.audit.model import MET, MISSED, RunAudit, parse_time, percentile
from flows.audit.queries import paused_gc
from flows.audit.scope import CLASSES, Window
from flows.audit.silences import SilenceLine
from flows.audit.summary import RUN_COLUMNS, RunLine

SOP_TIME_NOTE = ("Durations are SOP time: wall-clock duration × the run's speed (a drill compressed 60× that "
                 "took one real minute counts as one hour).")
DEFINITIONS = {
    "on_time": "runs whose deadline was met / runs whose deadline was met or missed (no deadline, still open "
               "before it, or cancelled before it: not counted)",
    "time_to_acknowledge": "from the run's first assignment to the first answer by a person on any step "
                           "(I'll take it, approval, done or rejected)",
    "time_to_complete": "from the run's start to its finish (open and cancelled runs left out)",
    "escalations_per_run": "ladder levels fired (reminders included) / runs",
    "late_step": "a step with a due time reported after it, timed out, or still open past it; each round a "
                 "rejection sent back counts as a step of its own",
    "rework_rounds": "rounds a rejection sent back to an earlier step (on_reject), over all steps",
    "status_missed": "a status cadence's asks with no update in their period or its grace (escalated)",
    "on_time_wall": "runs on a calendar judged on wall time (their deadline counted round the clock); "
                    "runs on wall time as on_time",
    "time_on_hold": "SOP time steps spent on hold (their clock stopped, waiting for a declared reason)",
    "late_steps_counting_holds": "late steps had their holds not stopped the clock (judged against the due "
                                 "instant as first assigned)",
    "late_steps_wall": "late steps judged on wall time (a calendar's due counted round the clock, holds counted)",
    "follow_ups": FOLLOW_UP_DEFINITION,
    "percentiles": "median: middle value (mean of the two middle ones); p90: nearest rank",
    "time": SOP_TIME_NOTE,
}


@dataclass
class Compliance:
    """The figures of one group of runs (``scope`` sop | class | all) or of one role's steps (``role``)."""

    scope: str
    key: str
    runs: int = 0
    finished: int = 0
    cancelled: int = 0
    open: int = 0
    met: int = 0
    missed: int = 0
    on_time_pct: float | None = None
    tta_median_s: float | None = None
    tta_p90_s: float | None = None
    unacknowledged: int = 0
    ttc_median_s: float | None = None
    ttc_p90_s: float | None = None
    escalations: int = 0
    escalations_per_run: float | None = None
    timed_steps: int = 0
    late_steps: int = 0
    late_pct: float | None = None
    rework_rounds: int = 0  # rounds a rejection sent back (on_reject), over all steps
    handovers: int = 0  # steps handed from one person to another
    status_asked: int = 0  # a status cadence's asks
    status_updates: int = 0  # status updates posted
    status_missed: int = 0  # asks with no update in their period (escalated)
    # business time and holds (#21): verdicts the other ways, time on hold
    met_wall: int = 0  # run deadlines met on wall time (round the clock where a calendar applies)
    missed_wall: int = 0
    on_time_wall_pct: float | None = None
    holds: int = 0  # holds placed on steps
    held_s: float = 0.0  # SOP seconds steps spent on hold
    late_steps_counting_holds: int = 0  # late had the holds not stopped the clock
    late_steps_wall: int = 0  # late on wall time (calendars' dues round the clock, holds counted)


COMPLIANCE_COLUMNS = [f.name for f in fields(Compliance)]


def _ratio(part: int, whole: int, scale: float = 100.0) -> float | None:
    return round(part * scale / whole, 1) if whole else None


def _ms(seconds: float | None) -> float | None:
    """Seconds to the millisecond: an export says 391.781, not 391.78103999999996 (a float's noise)."""
    return None if seconds is None else round(seconds, 3)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class _Tally:
    """Accumulates runs into one :class:`Compliance` row."""

    def __init__(self, scope: str, key: str):
        self.row = Compliance(scope, key)
        self.tta: list[float] = []
        self.ttc: list[float] = []

    def add_run(self, run: RunFacts) -> None:
        row = self.row
        row.runs += 1
        row.finished += run.status == "finished"
        row.cancelled += run.status == "cancelled"
        row.open += run.status == "open"
        row.met += run.verdict == MET
        row.missed += run.verdict == MISSED
        row.escalations += run.escalations
        row.timed_steps += len(run.timed_steps)
        row.late_steps += sum(late for _, late in run.timed_steps)
        row.rework_rounds += run.rework_rounds
        row.handovers += run.handovers
        row.status_asked += run.status_asked
        row.status_updates += run.status_updates
        row.status_missed += run.status_missed
        row.met_wall += run.verdict_wall == MET
        row.missed_wall += run.verdict_wall == MISSED
        row.holds += run.holds
        row.held_s += run.held_s
        row.late_steps_counting_holds += sum(late for late, _ in run.late_other_ways)
        row.late_steps_wall += sum(late for _, late in run.late_other_ways)
        if run.tta is not None:
            self.tta.append(run.tta)
        elif run.assigned:
            row.unacknowledged += 1
        if run.ttc is not None:
            self.ttc.append(run.ttc)

    def add_step(self, late: bool) -> None:
        self.row.timed_steps += 1
        self.row.late_steps += late

    def done(self) -> Compliance:
        row = self.row
        row.on_time_pct = _ratio(row.met, row.met + row.missed)
        row.tta_median_s, row.tta_p90_s = _ms(_median(self.tta)), _ms(percentile(self.tta, 0.9))
        row.ttc_median_s, row.ttc_p90_s = _ms(_median(self.ttc)), _ms(percentile(self.ttc, 0.9))
        row.escalations_per_run = round(row.escalations / row.runs, 2) if row.runs else None
        row.late_pct = _ratio(row.late_steps, row.timed_steps)
        row.on_time_wall_pct = _ratio(row.met_wall, row.met_wall + row.missed_wall)
        return row


#: the header's words for ``--drills exclude`` and ``--drills only``
DRILLS_NOTE = {"exclude": "drills left out", "only": "drills only"}


@dataclass
class ComplianceReport:
    """Compliance of the runs in a window, with each run's line (the timelines come from the runs)."""

    generated_at: datetime
    since: datetime | None
    until: datetime | None
    sop: str | None
    sop_class: str | None
    overall: Compliance
    by_sop: list[Compliance] = field(default_factory=list)
    by_class: list[Compliance] = field(default_factory=list)
    by_role: list[Compliance] = field(default_factory=list)
    runs: list[RunLine] = field(default_factory=list)
    drills: str = "include"  # include | exclude | only: what was done with drills (``--drills``)
    #: the silences that held triggers in the window (or were made in it): who, why, how many (by the records' time)
    silences: list[SilenceLine] = field(default_factory=list)
    #: follow-ups done within their window: per (SOP whose runs' ends started them, follow-up SOP), then ``all``
    follow_ups: list[FollowUpFigures] = field(default_factory=list)

    def drills_note(self) -> str:
        """What the figures did with drills, for a report's header: left out, alone, or how many count beside the
        real runs ("" when none does)."""
        if self.drills != "include":
            return DRILLS_NOTE[self.drills]
        count = sum(1 for line in self.runs if line.drill)
        return f"{count} drill{'s' if count != 1 else ''} counted with the real runs" if count else ""

    @property
    def rows(self) -> list[Compliance]:
        """Every figure row: overall, per SOP, per class, per role (the CSV export)."""
        return [self.overall, *self.by_sop, *self.by_class, *self.by_role]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        head = ("generated_at", "since", "until", "sop", "sop_class", "drills")  # what was asked, first
        data = {**{k: data[k] for k in head}, **data}
        data["definitions"] = DEFINITIONS
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComplianceReport:
        """The inverse of :meth:`to_dict` (JSON exports read back, e.g. to compare two periods)."""
        def lines(items: list[dict[str, Any]]) -> list[RunLine]:
            return [RunLine(**{**i, "started_at": parse_time(i["started_at"]), "ended_at": parse_time(i["ended_at"])})
                    for i in items]

        return cls(generated_at=parse_time(data["generated_at"]), since=parse_time(data["since"]),  # type: ignore[arg-type]
                   until=parse_time(data["until"]), sop=data["sop"], sop_class=data["sop_class"],
                   overall=Compliance(**data["overall"]), by_sop=[Compliance(**r) for r in data["by_sop"]],
                   by_class=[Compliance(**r) for r in data["by_class"]], by_role=[Compliance(**r) for r in data["by_role"]],
                   runs=lines(data["runs"]), drills=data.get("drills", "include"),
                   silences=[SilenceLine(**{**s, "created_at": parse_time(s["created_at"]),
                                            "ended_at": parse_time(s["ended_at"])}) for s in data.get("silences", [])],
                   follow_ups=[FollowUpFigures(**f) for f in data.get("follow_ups", [])])


class RunFacts(NamedTuple):
    """What the figures need of one run, as of ``now`` (a tuple: cheap to send between processes)."""

    seq: int  # of its run_started record: start order
    sop_id: str
    sop_class: str
    status: str
    verdict: str
    escalations: int
    tta: float | None
    assigned: bool
    ttc: float | None
    timed_steps: tuple[tuple[str, bool], ...]  # (role, late) of each step with a due-time verdict
    line: tuple[Any, ...]  # the RunLine's fields, in RUN_COLUMNS order
    rework_rounds: int = 0
    handovers: int = 0
    status_asked: int = 0
    status_updates: int = 0
    status_missed: int = 0
    verdict_wall: str = ""  # the run's deadline on wall time
    holds: int = 0
    held_s: float = 0.0
    late_other_ways: tuple[tuple[bool, bool], ...] = ()  # per timed step: (late counting holds, late on wall time)
    #: a follow-up run: (the SOP whose run's end started it, its SOP, its verdict against its window)
    follow_up: tuple[str, str, str] | None = None

    @classmethod
    def of(cls, run: RunAudit, now: datetime) -> RunFacts:
        timed = []
        other = []
        for step in run.steps.values():
            for earlier in step.rounds:  # a round a rejection sent back was an ask with its due: judged as one
                if (late := earlier.late) is not None and step.is_human:
                    timed.append((step.assignee or "(automated)", late))
                    other.append((late, late))
            verdict = step.deadline(now)
            if verdict in (MET, MISSED):
                timed.append((step.assignee or "(automated)", verdict == MISSED))
                other.append((step.deadline_with_holds(now) == MISSED, step.deadline_wall(now) == MISSED))
        line = RunLine.of(run, now)
        return cls(run.started_seq, run.sop_id, run.sop_class, run.status, line.deadline, run.escalations, run.time_to_acknowledge,
                   run.first_assigned_at is not None, run.time_to_complete, tuple(timed),
                   tuple(getattr(line, name) for name in RUN_COLUMNS),
                   sum(len(step.rounds) for step in run.steps.values()), run.handovers, run.status_asked,
                   len(run.status_updates), run.status_missed, run.deadline_wall(now),
                   run.holds, run.held_s, tuple(other), _follow_up(run, now))


def _follow_up(run: RunAudit, now: datetime) -> tuple[str, str, str] | None:
    judged = follow_up_verdict(run, now)
    if judged is None:
        return None
    return str((run.trigger or {}).get("parent_sop") or "?"), run.sop_id, judged


def run_facts(runs: list[RunAudit], now: datetime) -> list[RunFacts]:
    with paused_gc():
        return [RunFacts.of(run, now) for run in runs]


def compliance_report(runs: list[RunAudit], now: datetime, within: Window | None = None, *, sop: str | None = None,
                      sop_class: str | None = None, drills: str = "include") -> ComplianceReport:
    """The figures of these runs as of ``now`` (open runs past their deadline count as missed); ``sop``,
    ``sop_class`` and ``drills`` say how the runs were chosen."""
    return aggregate(run_facts(runs, now), now, within, sop=sop, sop_class=sop_class, drills=drills)


def aggregate(facts: list[RunFacts], now: datetime, within: Window | None = None, *, sop: str | None = None,
              sop_class: str | None = None, drills: str = "include") -> ComplianceReport:
    """The report of runs already reduced to their facts (in start order)."""
    within = within or Window()
    with paused_gc():
        overall = _Tally("all", "all")
        by_sop: dict[str, _Tally] = {}
        by_class: dict[str, _Tally] = {}
        roles: dict[str, _Tally] = {}
        for run in facts:
            for role, late in run.timed_steps:
                if role not in roles:
                    roles[role] = _Tally("role", role)
                roles[role].add_step(late)
            for table, key, scope in ((by_sop, run.sop_id, "sop"), (by_class, run.sop_class, "class")):
                if key not in table:
                    table[key] = _Tally(scope, key)
                table[key].add_run(run)
            overall.add_run(run)
        order = {c: i for i, c in enumerate(CLASSES)}
        return ComplianceReport(generated_at=now, since=within.since, until=within.until, sop=sop, sop_class=sop_class,
                                overall=overall.done(), by_sop=[by_sop[k].done() for k in sorted(by_sop)],
                                by_class=[by_class[k].done() for k in sorted(by_class, key=lambda c: (order.get(c, 99), c))],
                                by_role=[roles[k].done() for k in sorted(roles)], runs=[RunLine(*f.line) for f in facts],
                                drills=drills, follow_ups=follow_up_figures([f.follow_up for f in facts if f.follow_up]))


__all__ = ["COMPLIANCE_COLUMNS", "Compliance", "ComplianceReport", "DEFINITIONS", "RunFacts", "SOP_TIME_NOTE",
           "aggregate", "compliance_report", "run_facts"]
