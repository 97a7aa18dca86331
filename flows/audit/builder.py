"""Folding one run's records, in chain order, into a :class:`~flows.audit.model.RunAudit`.

One method per record kind, and :data:`HANDLERS`, the table from a kind to its method:
a new record kind that matters to the audit is one method and one line here.
:mod:`flows.audit.queries` drives the loop over the records.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from flows.audit.facts import (
    Acknowledgement,
    Approval,
    Delivery,
    Entry,
    Escalation,
    HandOver,
    Help,
    Notification,
    StatusUpdate,
)
from flows.audit.followups import FollowUpLink
from flows.audit.model import (
    FINISHED_STEP,
    Outline,
    RunAudit,
    StepAudit,
    parse_time,
)
from flows.ledger.vocabulary import RecordKind


class RunBuilder:
    """Folds one run's records, in chain order, into a :class:`RunAudit`.

    Started from the run's ``run_started`` record; each later record goes to the handler
    of its kind in :data:`HANDLERS` (``flows.audit.queries`` drives the loop).
    """

    def __init__(self, seq: int, at: datetime, actor: str | None, data: dict[str, Any], run_id: str,
                 sop: Outline | None, keep_entries: bool):
        # positional: cheaper than by keyword, and this runs for every step of every run read
        steps = {sid: StepAudit(sid, title, kind, assignee) for sid, title, kind, assignee in sop.steps} \
            if sop is not None else {}
        self.steps = steps
        self.run = RunAudit(
            started_seq=seq, id=run_id, sop_id=data.get("sop") or "?", sop_hash=data.get("sop_hash") or "",
            version=None if data.get("version") is None else str(data["version"]),
            title=sop.title if sop else data.get("sop") or "?", sop_class=sop.sop_class if sop else "?",
            priority=data.get("priority"), initiator=actor, initiator_facts=data, trigger=data.get("trigger"),
            inputs=data.get("inputs") or {}, speed=float(data.get("speed") or 1.0), started_at=at,
            deadline_at=parse_time(data.get("deadline_at")), dedup_key=data.get("dedup_key"), steps=steps,
            calendar=data.get("calendar"), wall_deadline_at=parse_time(data.get("wall_deadline_at")))
        if keep_entries:
            self.run.entries.append(Entry(seq, at, "run_started", None, actor, data))

    def step(self, step_id: str | None) -> StepAudit:
        step = self.steps.get(step_id)
        if step is None:  # a step the pinned SOP does not name (its text is missing)
            step_id = step_id or ""
            step = self.steps.get(step_id) or StepAudit(id=step_id, title=step_id, kind="?")
            self.steps[step_id] = step
        return step

    # --- one method per record kind --------------------------------------------------------

    def _assigned(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.state, step.ready_at, step.due_at = "active", at, parse_time(data.get("due_at"))
        step.assignee, step.person = data.get("assignee") or step.assignee, data.get("person")
        step.first_due_at, step.calendar = step.due_at, data.get("calendar")
        step.wall_due_at = parse_time(data.get("wall_due_at"))
        if step.kind == "?":
            step.kind = "human"
        if self.run.first_assigned_at is None:
            self.run.first_assigned_at = at

    def _ready(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.state, step.ready_at = "ready", at

    def _waiting(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.state, step.ready_at = "active", at

    def _started(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.state, step.started_at = "running", at

    def _finished_step(self, seq: int, at: datetime, step_id: str | None, actor: str | None,
                       data: dict[str, Any], state: str) -> None:
        step = self.step(step_id)
        step.state, step.finished_at, step.actor = state, at, actor
        if step.ready_at is None:  # a check step is ready and done in one transition
            step.ready_at = at
        if data:
            step.actor_facts = data
            result = data.get("result")
            if result:
                step.evidence = list(result.get("evidence") or [])
                step.values = {k: v for k, v in result.items() if k not in ("evidence", "approvers")}
            else:
                step.evidence, step.values = [], {}
            step.note, step.reason = data.get("note"), data.get("reason")
            step.deadline_met_recorded = data.get("deadline_met")
        if state in ("done", "rejected") and actor and step.kind == "human":
            self._acknowledged(Acknowledgement(seq, at, step_id, actor, state, data))

    def _approval(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.step(step_id).approvals.append(Approval(seq, at, actor, data.get("note"), data))
        self._acknowledged(Acknowledgement(seq, at, step_id, actor, "approved", data))

    def _claimed(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.claimed_by, step.claimed_at, step.claimed_facts = actor, at, data
        self._acknowledged(Acknowledgement(seq, at, step_id, actor, "took it", data))  # "I'll take it" acknowledges

    def _acknowledged(self, answer: Acknowledgement) -> None:
        """The run's first answer by a person ends its time to acknowledge: kept with who gave it, and where."""
        if self.run.first_report_at is None:
            self.run.first_report_at, self.run.acknowledged = answer.at, answer

    def _handed_over(self, seq: int, at: datetime, step_id: str | None, actor: str | None,
                     data: dict[str, Any]) -> None:
        step = self.step(step_id)  # the new holder holds it as if they had taken it
        step.claimed_by, step.claimed_at, step.claimed_facts = data.get("to"), at, data
        step.hand_overs.append(HandOver(seq, at, actor, data.get("holder"), data.get("to"), data.get("note") or None,
                                        data))
        self.run.handovers += 1

    def _reopened(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.step(step_id).reopen(int(data.get("round") or 2), data.get("by"), data.get("cause"), data.get("note"))

    def _held(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.holds, step.held_since = step.holds + 1, at
        if data.get("run_hold"):  # its run's hold: counted once, for the run (run_held / run_released)
            step.run_holds, step.held_with_run = step.run_holds + 1, True

    def _released(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        step = self.step(step_id)
        step.held_since = None
        step.held_s += float(data.get("held_s") or 0.0)
        if step.held_with_run:
            step.run_held_s += float(data.get("held_s") or 0.0)
            step.held_with_run = False
        if data.get("ended") != "step_ended" and data.get("due_at"):
            step.due_at = parse_time(data["due_at"])

    def _help(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.step(step_id).help.append(Help(seq, at, actor, data.get("note"), data.get("level"), data))

    def _escalation(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.step(step_id).escalations.append(Escalation(
            seq, at, str(data.get("level")), data.get("message") or "escalated", list(data.get("notify") or []),
            parse_time(data.get("due_at")), data.get("late_ms"),
            list(data["paged"] or []) if "paged" in data else None))
        self.run.escalations += 1

    def _overdue(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.step(step_id).overdue_at = at

    def _notification(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        deliveries = [Delivery(recipient=r.get("recipient", "?"), destination=r.get("destination", "?"),
                               ok=bool(r.get("ok")), error=r.get("error"), attempts=r.get("attempts"),
                               latency_ms=None if r.get("latency") is None else int(round(r["latency"] * 1000)),
                               via=r.get("via"))
                      for r in data.get("results") or []]
        note = Notification(seq, at, data.get("notification") or "?", deliveries, list(data.get("kept") or []),
                            [(str(n.get("to")), str(n.get("why"))) for n in data.get("not_sent") or []])
        (self.step(step_id).notifications if step_id else self.run.notifications).append(note)

    def _status_update(self, seq: int, at: datetime, step_id: str | None, actor: str | None,
                       data: dict[str, Any]) -> None:
        self.run.status_updates.append(StatusUpdate(seq, at, actor, str(data.get("text") or ""), data))

    def _status_asked(self, seq: int, at: datetime, step_id: str | None, actor: str | None,
                      data: dict[str, Any]) -> None:
        self.run.status_asked += 1

    def _status_missed(self, seq: int, at: datetime, step_id: str | None, actor: str | None,
                       data: dict[str, Any]) -> None:
        self.run.status_missed += 1

    def _snoozed(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.run.snoozes.append(StatusUpdate(seq, at, actor, str(data.get("reason") or ""), data))

    def _run_held(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.run.run_holds += 1

    def _run_released(self, seq: int, at: datetime, step_id: str | None, actor: str | None,
                      data: dict[str, Any]) -> None:
        run = self.run
        run.run_held_s += float(data.get("held_s") or 0.0)
        if data.get("ended") != "run_ended" and data.get("deadline_at"):
            run.first_deadline_at = run.first_deadline_at or run.deadline_at
            run.deadline_at = parse_time(data["deadline_at"])

    def _run_overdue(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.run.overdue_at = at

    def _repeated(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        self.run.repeats = int(data.get("repeats") or self.run.repeats + 1)

    def _run_finished(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        run = self.run
        run.status, run.ended_at, run.outcome = "finished", at, data.get("outcome")
        run.deadline_met_recorded = data.get("deadline_met")

    def _run_cancelled(self, seq: int, at: datetime, step_id: str | None, actor: str | None, data: dict[str, Any]) -> None:
        run = self.run
        run.status, run.ended_at, run.ended_by, run.ended_by_facts = "cancelled", at, actor, data
        run.outcome = f"cancelled: {data.get('reason')}"
        run.cancel_reason = data.get("reason")
        for step in run.steps.values():
            if step.state not in FINISHED_STEP:
                step.state, step.finished_at = "cancelled", at


def _follow_up(builder: RunBuilder, seq: int, at: datetime, step_id: str | None, actor: str | None,
               data: dict[str, Any], kind: str) -> None:
    """What the run's end did about one follow-up (``flows.audit.followups``)."""
    builder.run.follow_ups.append(FollowUpLink.of(seq, at, kind, data))


def _finisher(state: str) -> Any:
    """``handler(builder, seq, at, step_id, actor, data)`` for a step finishing in ``state``."""
    return partial(RunBuilder._finished_step, state=state)


#: record kind -> what it does to a run (kinds not here only appear on the timeline)
K = RecordKind
# keyed by the kinds' plain strings: a dict of str keys only is looked up on CPython's fast path (once per record)
HANDLERS: dict[str, Any] = {str(kind): handler for kind, handler in {
    K.STEP_ASSIGNED: RunBuilder._assigned,
    K.STEP_READY: RunBuilder._ready,
    K.STEP_WAITING: RunBuilder._waiting,
    K.STEP_STARTED: RunBuilder._started,
    K.APPROVAL: RunBuilder._approval,
    K.STEP_CLAIMED: RunBuilder._claimed,
    K.HELP_ASKED: RunBuilder._help,
    K.STEP_HELD: RunBuilder._held,
    K.STEP_RELEASED: RunBuilder._released,
    K.STEP_HANDED_OVER: RunBuilder._handed_over,
    K.STEP_REOPENED: RunBuilder._reopened,
    K.ESCALATION: RunBuilder._escalation,
    K.STEP_OVERDUE: RunBuilder._overdue,
    K.NOTIFICATION: RunBuilder._notification,
    K.RUN_HELD: RunBuilder._run_held,
    K.RUN_RELEASED: RunBuilder._run_released,
    K.RUN_OVERDUE: RunBuilder._run_overdue,
    K.STATUS_UPDATE: RunBuilder._status_update,
    K.STATUS_ASKED: RunBuilder._status_asked,
    K.STATUS_MISSED: RunBuilder._status_missed,
    K.CADENCE_SNOOZED: RunBuilder._snoozed,
    K.TRIGGER_REPEATED: RunBuilder._repeated,
    K.RUN_FINISHED: RunBuilder._run_finished,
    K.RUN_CANCELLED: RunBuilder._run_cancelled,
    **{K.step_ended(state): _finisher(state) for state in FINISHED_STEP if state != "cancelled"},
    **{kind: partial(_follow_up, kind=str(kind))
       for kind in (K.FOLLOW_UP_STARTED, K.FOLLOW_UP_SKIPPED, K.FOLLOW_UP_REFUSED)},
}.items()}

#: the record kinds figures and timelines need (notifications, help asked and bookkeeping left out: faster)
SUMMARY_KINDS: tuple[str, ...] = tuple(k for k in HANDLERS if k not in (
    K.NOTIFICATION, K.HELP_ASKED, K.FOLLOW_UP_STARTED, K.FOLLOW_UP_SKIPPED, K.FOLLOW_UP_REFUSED))
#: of those, the kinds whose data figures read (the others count by kind and instant alone)
SUMMARY_DATA: frozenset[str] = frozenset(map(str, {K.STEP_ASSIGNED, K.STEP_DONE, K.STEP_REJECTED, K.RUN_FINISHED,
                                                    K.RUN_CANCELLED, K.TRIGGER_REPEATED, K.STEP_RELEASED,
                                                    K.STEP_HELD, K.RUN_RELEASED}))
