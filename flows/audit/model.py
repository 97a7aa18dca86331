"""A run as an auditor reads it, rebuilt from the hash-chained records alone.

The projections (``runs``, ``steps``…) serve the engine and anyone with the database file
can change them without a trace. An audit must rest only on what ``sop audit verify``
vouches for, so every figure here is derived from ``records`` (plus the pinned SOP texts,
whose hashes the chain holds). :class:`~flows.audit.builder.RunBuilder` folds one run's
records, in chain order, into a :class:`RunAudit`; the facts it holds (a page, an escalation, an answer…)
are in :mod:`flows.audit.facts`.

Durations are *SOP time*: wall-clock duration × the run's speed, so a drill compressed 60×
that took one real minute took one hour of playbook time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flows.audit.facts import (
    Acknowledgement,
    Approval,
    Entry,
    Escalation,
    HandOver,
    Help,
    Notification,
    Round,
    StatusUpdate,
)
from flows.language.actors import described
from flows.language.spec import Sop
from flows.ledger.vocabulary import TERMINAL_STEP, is_drill

# deadline verdicts, for runs and for steps
MET, MISSED, PENDING, NO_DEADLINE, NOT_APPLICABLE = "met", "missed", "pending", "none", "n/a"
FINISHED_STEP = TERMINAL_STEP


def parse_time(value: Any) -> datetime | None:
    """A time as the ledger's canonical JSON holds it (``str(datetime)``), made UTC-aware."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def percentile(values: Iterable[float], share: float) -> float | None:
    """Nearest-rank percentile (no interpolation: the figure is always a value that occurred)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(slots=True)
class StepAudit:
    """One step of a run: when it was ready, who was asked and told, who did what, its deadline."""

    id: str
    title: str
    kind: str
    assignee: str | None = None  # the role (or person) the SOP names
    person: str | None = None  # who answered for it when it was assigned
    state: str = "pending"
    ready_at: datetime | None = None
    started_at: datetime | None = None
    due_at: datetime | None = None
    finished_at: datetime | None = None
    overdue_at: datetime | None = None
    actor: str | None = None
    actor_facts: dict[str, Any] = field(default_factory=dict)  # how the report came: via, by, os_user, token
    values: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    note: str | None = None
    reason: str | None = None
    deadline_met_recorded: bool | None = None
    approvals: list[Approval] = field(default_factory=list)
    claimed_by: str | None = None  # who said "I'll take it"
    claimed_at: datetime | None = None
    claimed_facts: dict[str, Any] = field(default_factory=dict)
    help: list[Help] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    hand_overs: list[HandOver] = field(default_factory=list)  # oldest first
    notifications: list[Notification] = field(default_factory=list)
    round: int = 1  # the current round (a rejection's rework sends a step back: 2, 3…)
    rounds: list[Round] = field(default_factory=list)  # the earlier rounds, oldest first
    # business time and holds: the due as first assigned (before holds moved it), the wall-time due beside a
    # calendar's, the calendar's name, how many holds and how long (SOP seconds), an open hold's start
    first_due_at: datetime | None = None
    wall_due_at: datetime | None = None
    calendar: str | None = None
    holds: int = 0
    held_s: float = 0.0
    held_since: datetime | None = None
    # of those, the holds its run's hold placed (the run counts them once: RunAudit.run_holds, run_held_s)
    run_holds: int = 0
    run_held_s: float = 0.0
    held_with_run: bool = False

    def reopen(self, round_: int, by: str | None, cause: str | None, note: str | None) -> None:
        """A rework round begins: this round is kept in ``rounds``, the step is asked afresh."""
        self.rounds.append(Round(self.round, self.state, self.actor, self.actor_facts, self.ready_at, self.due_at,
                                 self.finished_at, self.values, self.note, self.approvals, by, cause, note))
        self.round, self.state = round_, "pending"
        self.ready_at = self.started_at = self.due_at = self.finished_at = self.overdue_at = None
        self.actor, self.actor_facts, self.values, self.evidence, self.note = None, {}, {}, [], None
        self.reason, self.deadline_met_recorded, self.approvals = None, None, []
        self.claimed_by, self.claimed_at, self.claimed_facts = None, None, {}
        self.first_due_at = self.wall_due_at = self.held_since = None

    @property
    def is_human(self) -> bool:
        return self.kind == "human"

    @property
    def actor_text(self) -> str | None:
        """Who reported, and how: ``li-wei for wang-fang (api)``; None for automation."""
        return described(self.actor, self.actor_facts) if self.actor else None

    @property
    def claimed_by_text(self) -> str | None:
        return described(self.claimed_by, self.claimed_facts) if self.claimed_by else None

    def deadline(self, now: datetime) -> str:
        """met / missed / pending / none (no due) / n/a (ended by skip or cancel before due): the SLA as its
        clock ran (on its calendar's working time, stopped while on hold)."""
        return self._verdict(self.due_at, now, recorded=True)

    def deadline_with_holds(self, now: datetime) -> str:
        """The verdict had its holds not stopped the clock (the due instant as first assigned)."""
        return self._verdict(self.first_due_at, now) if self.holds else self.deadline(now)

    def deadline_wall(self, now: datetime) -> str:
        """The verdict on wall time (a calendar's step judged against ``due`` counted round the clock, hold
        time counted); a step on wall time: its verdict counting holds."""
        return self._verdict(self.wall_due_at, now) if self.calendar else self.deadline_with_holds(now)

    def _verdict(self, due_at: datetime | None, now: datetime, recorded: bool = False) -> str:
        if due_at is None:
            return NO_DEADLINE
        if self.state in ("done", "rejected"):
            met = self.deadline_met_recorded if recorded else None
            if met is None and self.finished_at is not None:
                met = self.finished_at <= due_at
            return MET if met else MISSED
        if recorded and self.overdue_at is not None:
            return MISSED
        if self.state in FINISHED_STEP:
            return MISSED if self.finished_at and self.finished_at > due_at else NOT_APPLICABLE
        return MISSED if now > due_at else PENDING


@dataclass(slots=True)
class RunAudit:
    """Everything the chain says about one run (``entries`` only when loaded in full)."""

    id: str
    sop_id: str
    sop_hash: str
    version: str | None
    title: str
    sop_class: str
    priority: int | None
    initiator: str | None
    initiator_facts: dict[str, Any]  # how the start came (the run_started record): via, by, os_user, token
    trigger: dict[str, Any] | None
    inputs: dict[str, Any]
    speed: float
    started_at: datetime
    deadline_at: datetime | None
    dedup_key: str | None = None
    status: str = "open"  # open | finished | cancelled
    outcome: str | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    ended_by_facts: dict[str, Any] = field(default_factory=dict)
    cancel_reason: str | None = None
    deadline_met_recorded: bool | None = None
    overdue_at: datetime | None = None
    repeats: int = 0
    escalations: int = 0
    started_seq: int = 0  # the run_started record: the order runs are reported in
    first_assigned_at: datetime | None = None
    first_report_at: datetime | None = None
    acknowledged: Acknowledgement | None = None  # the first answer by a person: who, where (first_report_at is its time)
    steps: dict[str, StepAudit] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    status_updates: list[StatusUpdate] = field(default_factory=list)  # posted by people while the run was open
    status_asked: int = 0  # a status cadence's asks
    status_missed: int = 0  # asks with no update in their period: escalated
    snoozes: list[StatusUpdate] = field(default_factory=list)  # the owner pushed an ask (text: the reason)
    handovers: int = 0  # steps handed from one person to another
    sop_text: str | None = None
    sop_text_ok: bool | None = None
    calendar: str | None = None  # the run's deadline counts business time on this calendar
    wall_deadline_at: datetime | None = None  # its deadline counted round the clock, beside the calendar's
    # holds of the whole run (run_held / run_released): how many, SOP seconds held, its deadline before they moved it
    run_holds: int = 0
    run_held_s: float = 0.0
    first_deadline_at: datetime | None = None
    follow_ups: list[Any] = field(default_factory=list)  # FollowUpLink: what its end started, skipped or refused

    @property
    def parent_run(self) -> str | None:
        """The run whose end started this one (its trigger says ``kind: follow_up``), or None."""
        trigger = self.trigger
        return str(trigger.get("run")) if isinstance(trigger, dict) and trigger.get("kind") == "follow_up" else None

    @property
    def window_ends_at(self) -> datetime | None:
        """When a follow-up run must be done: ``within`` from its parent's end (None: no follow-up)."""
        return parse_time(self.trigger.get("window_ends_at")) if self.parent_run and self.trigger else None

    @property
    def is_drill(self) -> bool:
        """Started as a drill (:func:`is_drill`): ``sop audit report --drills exclude`` leaves it out."""
        return is_drill(self.trigger)

    @property
    def drill_names_people(self) -> bool:
        """A drill that names who takes part (its trigger's ``people``): its pages reached them alone, so a level
        that reached nobody named none of them (``flows.engine.participants``)."""
        return self.is_drill and isinstance(self.trigger.get("people"), list)

    def sop_seconds(self, start: datetime | None, end: datetime | None) -> float | None:
        """Wall time from ``start`` to ``end`` as SOP time, in seconds."""
        if start is None or end is None:
            return None
        return (end - start).total_seconds() * self.speed

    def deadline(self, now: datetime) -> str:
        """met / missed / pending (open, not yet due) / none (no deadline) / n/a (cancelled in time)."""
        if self.deadline_at is None:
            return NO_DEADLINE
        if self.failed:
            return MISSED
        if self.status == "finished":
            met = self.deadline_met_recorded
            if met is None and self.ended_at is not None:
                met = self.ended_at <= self.deadline_at
            return MET if met else MISSED
        if self.overdue_at is not None:
            return MISSED
        if self.status == "cancelled":
            return MISSED if self.ended_at and self.ended_at > self.deadline_at else NOT_APPLICABLE
        return MISSED if now > self.deadline_at else PENDING

    @property
    def failed(self) -> bool:
        """It ended failed: its procedure was not carried out, so its deadline is missed whenever it ended, on every
        clock (recorded so since 2026-12-06; older records said met when it ended in time)."""
        return self.status == "finished" and self.outcome == "failed"

    def deadline_wall(self, now: datetime) -> str:
        """The run's verdict on wall time (its deadline counted round the clock where a calendar applies, and
        not moved by its holds)."""
        wall = self.wall_deadline_at if self.calendar is not None else self.first_deadline_at
        if wall is None:
            return self.deadline(now)
        if self.failed:
            return MISSED
        end = self.ended_at if self.status != "open" else None
        if self.status == "cancelled":
            return MISSED if end and end > wall else NOT_APPLICABLE
        if end is not None:
            return MET if end <= wall else MISSED
        return MISSED if now > wall else PENDING

    @property
    def held_s(self) -> float:
        """SOP seconds on hold: its steps' own holds, and each hold of the whole run once (not once per step)."""
        return sum(step.held_s - step.run_held_s for step in self.steps.values()) + self.run_held_s

    @property
    def holds(self) -> int:
        """Holds placed: its steps' own, and each hold of the whole run once."""
        return sum(step.holds - step.run_holds for step in self.steps.values()) + self.run_holds

    @property
    def time_to_acknowledge(self) -> float | None:
        """SOP seconds from the run's first assignment to the first answer by a person (docs/audit.md)."""
        return self.sop_seconds(self.first_assigned_at, self.first_report_at)

    @property
    def time_to_complete(self) -> float | None:
        """SOP seconds from start to finish; None for open and cancelled runs."""
        return self.sop_seconds(self.started_at, self.ended_at) if self.status == "finished" else None

    @property
    def initiator_text(self) -> str | None:
        """Who started the run, and how: ``zhao-lei (cli, os user zlei)``, ``li-wei (api)``, ``alertmanager``."""
        return started_by(self.initiator, self.initiator_facts, self.trigger) if self.initiator else None

    @property
    def ended_by_text(self) -> str | None:
        return described(self.ended_by, self.ended_by_facts) if self.ended_by else None

    @property
    def outcome_text(self) -> str:
        if self.status == "cancelled":
            return "cancelled"
        return self.outcome or self.status

    @property
    def sop_deadline_seconds(self) -> float | None:
        return self.sop_seconds(self.started_at, self.deadline_at)

    def trigger_text(self) -> str:
        """Who or what started the run, in a few words: ``manual by li-wei``, ``alert HighErrorRate
        (alertmanager)``, ``metric negative_mentions 140 (sum > 100)``, ``event deploy``, ``schedule``."""
        trigger = self.trigger or {}
        kind = str(trigger.get("kind") or ("manual" if self.initiator else "unknown"))
        labels = trigger.get("labels") if isinstance(trigger.get("labels"), dict) else {}
        if kind == "alert":
            what = f"{labels.get('alertname') or trigger.get('alertname') or '?'}"
            what += f" ({trigger['source']})" if trigger.get("source") else ""
        elif kind == "metric":
            what = f"{trigger.get('metric')} {trigger.get('value')}"
            what += f" ({trigger['condition']})" if trigger.get("condition") else ""
        elif kind == "follow_up":
            what = f"of {trigger.get('parent_sop') or '?'} run {trigger.get('run')} ({trigger.get('outcome')})"
            return f"follow-up {what}"
        else:
            what = next((str(trigger[k]) for k in ("event", "schedule", "name", "alertname") if trigger.get(k)), "")
        who = trigger.get("by") or self.initiator
        text = f"{kind} {what}".strip()
        if who and who != kind and who not in what:
            text += f" by {who}"
        return text


def started_by(initiator: str | None, data: dict[str, Any], trigger: Any) -> str:
    """The initiator of a run as the audit prints it, from its ``run_started`` record's facts; a run
    started from the CLI before starts recorded them has its trigger say how (``via``, ``os_user``)."""
    if not data.get("via") and isinstance(trigger, dict) and trigger.get("kind") == "manual":
        data = trigger
    elif initiator == "drill" and isinstance(trigger, dict) and trigger.get("os_user"):  # `sop drill` with no --as
        return f"drill (os user {trigger['os_user']})"
    return described(initiator, data)


@dataclass(frozen=True)
class Outline:
    """What a run needs of its pinned SOP: title, class, and each step's id, title, kind and assignee."""

    title: str
    sop_class: str
    steps: tuple[tuple[str, str, str, str | None], ...]

    @classmethod
    def of(cls, sop: Sop) -> Outline:
        return cls(sop.title, sop.class_, tuple((s.id, s.name, s.kind, getattr(s, "assignee", None))  # type: ignore[attr-defined]
                                                for s in sop.steps))
