"""Drills: an SOP on compressed time with simulated responders, a live timeline and a summary.

A drill is a real run (real ledger, real timers, real flow run, real pages to the responders'
configured contacts — the local inbox by default); only the people are simulated, and its
http, command and notify steps (docs/running.md, "Drills touch no real system"). Each
responder answers a human step after a chosen or random share of its due time; ``late``
steps are answered after their due, so the escalation ladder is exercised.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.audit import Audit
from flows.audit.model import MET, MISSED
from flows.audit.timeline import describe, ladder
from flows.clock import sop_time
from flows.engine import outbox, participants
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.actors import Actor, UnknownPerson
from flows.language.fields import FieldSpec
from flows.language.steps.human import HumanReport, HumanStep, ReportRefused, approvers_besides, members
from flows.ledger import utc
from flows.ledger.schema import records
from flows.ledger.vocabulary import TERMINAL_STEP, RecordKind, StepState

log = logging.getLogger("sop.drill")

NEGATIVE = {"low", "hold", "no", "reject", "rejected", "stop", "none", "abort", "fail", "failed", "iterate"}


def sample_value(name: str, spec: FieldSpec) -> Any:
    """A plausible answer for a form field (the main path: not 'low', not 'hold')."""
    if spec.default is not None:
        return spec.default
    if spec.enum:
        return next((v for v in spec.enum if str(v).lower() not in NEGATIVE), spec.enum[0])
    if spec.type == "boolean":
        return True
    if spec.type in ("integer", "number"):
        value = max(spec.minimum or 0, 1)
        return int(value) if spec.type == "integer" else float(value)
    if spec.type == "date":
        return date.today().isoformat()
    return f"drill: {name}"


class DrillRefused(ValueError):
    """A drill that cannot be played as asked: refused before it starts, or (a hand-over the engine refuses) stopped,
    its run cancelled."""


def hand_over_problems(site: Any, sop: Any, hand_over: dict[str, str]) -> list[str]:
    """Why ``--hand-over STEP=PERSON`` cannot be played (empty: it can), said before the drill starts: the step's holder
    (its role's person) hands it on, so PERSON must be another member of that role, as :meth:`Engine.hand_over`
    requires. Found only when the step comes, a wrong name cost the whole ladder and a traceback."""
    steps = {step.id: step for step in sop.steps}
    problems = []
    for step_id, person in hand_over.items():
        step = steps.get(step_id)
        if not isinstance(step, HumanStep):
            people_steps = ", ".join(s.id for s in sop.steps if isinstance(s, HumanStep))
            problems.append(f"--hand-over {step_id}={person}: {sop.id} has no step `{step_id}` waiting on a person "
                            f"(its people's steps: {people_steps})")
        elif person not in site.people:
            problems.append(f"--hand-over {step_id}={person}: {UnknownPerson(person, site, 'person')}")
        elif person not in (team := members(site, step.assignee)):
            problems.append(f"--hand-over {step_id}={person}: {person} is not a member of {step.assignee} "
                            f"({', '.join(sorted(team))}), to whom its holder may hand `{step_id}`")
    return problems


@dataclass
class TimelineEntry:
    """One line of the drill's timeline, at an offset in SOP time from the run's start (on the run's clock:
    wall time since the start times the speed, :func:`flows.clock.sop_time`)."""

    offset: timedelta
    kind: str
    step: str | None
    detail: str


@dataclass
class DrillResult:
    """How the drill went: the run's outcome, its timeline, and per step the audit's verdict (``steps``)."""

    run_id: str
    outcome: str
    timeline: list[TimelineEntry] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    escalations: int = 0
    deadline_met: bool | None = None
    wall_seconds: float = 0.0
    #: SOP seconds from the first ask to the first answer by a person (the audit's TTA), None when nobody answered
    time_to_acknowledge_s: float | None = None
    #: who was escalated to, when (:func:`flows.audit.timeline.ladder`)
    ladder: list[dict[str, Any]] = field(default_factory=list)


class Drill:
    """Runs one drill; ``on_entry`` sees each timeline entry as it happens."""

    def __init__(self, engine: Engine, sop_id: str, speed: float, *, late: set[str] | None = None,
                 inputs: dict[str, Any] | None = None, answers: dict[str, dict[str, Any]] | None = None,
                 seed: int | None = None, share: tuple[float, float] = (0.3, 0.7), late_factor: float = 1.4,
                 timers: bool = True, on_entry: Callable[[TimelineEntry], None] | None = None,
                 on_start: Callable[[str], None] | None = None, reject: set[str] | None = None,
                 hand_over: dict[str, str] | None = None, live: bool = False,
                 starter: Actor | str = "drill", facts: dict[str, Any] | None = None, people: list[str] | None = None):
        self.engine = engine
        #: who takes part (``flows.engine.participants``): its pages to anyone else are not sent; None: everyone
        self.people = people
        #: who starts it: a person (an Actor: ``drill by li-wei (cli, os user ops)``), or ``drill``; ``facts`` go in
        #: its trigger (the OS account a drill without a person was started from)
        self.starter = starter
        self.facts = dict(facts or {})
        self.sop_id = sop_id
        self.speed = speed
        self.late = late or set()
        #: steps whose first answer is a rejection (a rework round when the step declares ``on_reject``)
        self.reject = set(reject or ())
        self._rejected: set[str] = set()
        self._stuck: set[str] = set()  # steps nobody in this drill may approve or answer (said once)
        #: steps their first holder hands to another person (step id -> person) as soon as they are asked
        self.hand_over = dict(hand_over or {})
        #: http, command and notify steps run for real (else simulated, unless a step says `drill: live`)
        self.live = live
        #: when the owner posts the status updates the run's cadence asked for (wall instants)
        self._updates_due: list[datetime] = []
        self.inputs = inputs or {}
        self.answers = answers or {}
        self.random = random.Random(seed)
        self.share = share
        self.late_factor = late_factor
        self.timers = timers
        self.on_entry = on_entry or (lambda entry: None)
        #: told the run id once the run started (``sop demo`` prints a step's page link then)
        self.on_start = on_start or (lambda run_id: None)
        self._planned: dict[str, datetime] = {}
        self._approvals: dict[str, int] = {}
        self._seq = 0
        #: when the run started, on the engine's clock (offsets on the timeline count from it)
        self._started: datetime | None = None

    def _answer_at(self, step: HumanStep, row: dict[str, Any]) -> datetime:
        """When the responder answers: a share of the step's ``due`` after it was ready; a ``late`` step that share
        of the time to its due instant, so after it even when a calendar puts that instant later than ``due`` of wall
        time (4h of business time asked at 16:00 is due the next morning)."""
        ready_at, due_at = row["ready_at"], row.get("due_at")
        if step.id in self.late and due_at is not None:
            return ready_at + (due_at - ready_at) * self.late_factor
        due = step.due or timedelta(minutes=10)
        share = self.late_factor if step.id in self.late else self.random.uniform(*self.share)
        return ready_at + due * share / self.speed

    def _offset(self, at: datetime) -> timedelta:
        """How long after the run's start ``at`` is, in SOP time."""
        assert self._started is not None, "the run has started"
        return sop_time(at - self._started, self.speed)

    def _report(self, run_id: str, step: HumanStep, initiator: str) -> None:
        values = {name: sample_value(name, spec) for name, spec in step.form.items() if spec.is_required or spec.default is None}
        values.update(self.answers.get(step.id, {}))
        view = self.engine.view(run_id)
        actor = view.steps[step.id].get("claimed_by") or self.engine.person_for(step.assignee)
        if step.approval is None and (actor := self._taking_part(run_id, view, step, actor)) is None:
            return
        if step.approval is not None:
            candidates = approvers_besides(self.engine.site, step.approval, initiator)
            if len(candidates) < step.approval.count:  # a real run could not be approved either: say so, once
                self._say("drill_error", step.id, f"{step.approval.count} approver(s) needed but only "
                          f"{', '.join(candidates) or 'nobody'} may approve beside {initiator}, who started the run "
                          "(four-eyes rule)", once=True)
                return
            actor = candidates[self._approvals.get(step.id, 0) % len(candidates)]
            self._approvals[step.id] = self._approvals.get(step.id, 0) + 1
        if step.id in self.reject and step.id not in self._rejected:
            self._rejected.add(step.id)
            report = HumanReport(actor=Actor(person=actor, via="drill"), outcome="rejected",
                                 note="drill: not with this wording")
            try:
                self.engine.report(run_id, step.id, report)
            except ReportRefused as exc:
                self._say("drill_error", step.id, str(exc))
            return
        report = HumanReport(actor=Actor(person=actor, via="drill"), values=values, note="drill", evidence=["drill://evidence"] if step.evidence else [])
        try:
            self.engine.report(run_id, step.id, report)
        except ReportRefused as exc:
            self._say("drill_error", step.id, str(exc))

    def _taking_part(self, run_id: str, view: Any, step: HumanStep, holder: str) -> str | None:
        """Who answers ``step`` in a drill naming its people: its holder when they take part; else a member of its role
        who does, taking it first ("I'll take it", as a person in the drill would from the board); else nobody (None:
        the step waits, its ladder climbing as in a real run, said once on the timeline). Everyone, without names."""
        present = participants.taking_part(view)
        if present is None or holder in present:
            return holder
        role = self.engine.site.roles.get(step.assignee or "")
        stand_in = next((member for member in (role.members if role else []) if member in present), None)
        if stand_in is None:
            self._say("drill_waits", step.id, f"waits: {holder} holds it and does not take part in the drill, nor does "
                      f"anyone else of {step.assignee} (its ladder climbs, as in a real run)", once=True)
            return None
        try:
            self.engine.claim(run_id, step.id, Actor(person=stand_in, via="drill"))
        except ReportRefused as exc:
            self._say("drill_error", step.id, str(exc))
            return None
        return stand_in

    def _say(self, kind: str, step_id: str, detail: str, *, once: bool = False) -> None:
        """A line of the drill's own on the timeline, now (``once``: the first time for this step only)."""
        if once:
            if step_id in self._stuck:
                return
            self._stuck.add(step_id)
        self.on_entry(TimelineEntry(self._offset(self.engine.clock.now()), kind, step_id, detail))

    def _drain(self, run_id: str, out: list[TimelineEntry]) -> None:
        with self.engine.ledger.read() as conn:
            rows = list(conn.execute(sa.select(records).where((records.c.run_id == run_id) & (records.c.seq > self._seq))
                                     .order_by(records.c.seq)))
        for row in rows:
            self._seq = row.seq
            if row.kind == RecordKind.STATUS_ASKED:  # the owner answers the ask within its grace
                self._updates_due.append(self.engine.clock.now() + timedelta(minutes=self.random.uniform(*self.share))
                                         / self.speed)
            entry = TimelineEntry(self._offset(utc(row.at)), row.kind, row.step_id,  # type: ignore[arg-type]
                                  describe(row.kind, json.loads(row.data), row.actor))
            if entry.detail is None:
                continue
            out.append(entry)
            self.on_entry(entry)

    def run(self, timeout: float | None = None) -> DrillResult:
        """Start the run and play the responders until it finishes (or ``timeout`` real seconds)."""
        began = time.monotonic()
        trigger = {"kind": "drill", "late": sorted(self.late), **self.facts, **({"live": True} if self.live else {}),
                   **({participants.PEOPLE: self.people} if self.people is not None else {})}
        earlier = self.engine.open_run(self.sop_id, self.inputs, trigger)
        if earlier is not None:  # it would attach to it: another drill's run, on another speed and other answers
            raise DrillRefused(self._still_open(earlier))
        result = self.engine.start(self.sop_id, self.inputs, initiator=self.starter, speed=self.speed, trigger=trigger)
        if result.attached:  # opened a moment ago by another drill
            raise DrillRefused(self._still_open(result.run_id))
        run_id = result.run_id
        starter = self.starter.person if isinstance(self.starter, Actor) else "drill"  # not their own approver
        self.on_start(run_id)
        view = self.engine.view(run_id)
        self._started = view.run["started_at"]
        sop = view.sop
        limit = timeout or max(120.0, (sop.deadline or timedelta(hours=2)).total_seconds() * 4 / self.speed + 60)
        stop = threading.Event()
        thread = None
        if self.timers:
            service = TimerService(self.engine, name=f"drill-{run_id}")
            thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
            thread.start()
        timeline: list[TimelineEntry] = []
        try:
            self._play(run_id, sop, starter, began, limit, timeline)
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=5)
        view = self.engine.view(run_id)
        steps, deadline = self._verdicts(run_id, timeline)
        review = Audit(self.engine.ledger, now=self.engine.clock.now()).run(run_id)
        return DrillResult(run_id=run_id, outcome=view.run["outcome"] or view.run["status"], timeline=timeline, steps=steps,
                           escalations=sum(1 for e in timeline if e.kind == "escalation"), deadline_met=deadline,
                           wall_seconds=time.monotonic() - began, time_to_acknowledge_s=review.time_to_acknowledge,
                           ladder=ladder(review))

    def _still_open(self, run_id: str) -> str:
        return (f"a drill of {self.sop_id} with the same dedup key is still open: run {run_id}; this one would attach "
                f"to it, so nothing was started. End it first: `sop cancel {run_id} --reason \"drill over\"`")

    def _play(self, run_id: str, sop: Any, starter: str, began: float, limit: float,
              timeline: list[TimelineEntry]) -> None:
        """Answer for the responders until the run ends. A drill that stops first (an error, Ctrl-C, ``limit``)
        cancels its run, saying why: left open, its ladder would go on paging people for a game day that is over."""
        try:
            while time.monotonic() - began < limit:
                self._drain(run_id, timeline)
                view = self.engine.view(run_id)
                if not view.is_open:
                    break
                now = self.engine.clock.now()
                while self._updates_due and self._updates_due[0] <= now:
                    self._updates_due.pop(0)
                    owner = self.engine.person_for(sop.owner)
                    done = sum(1 for s in sop.steps if view.state(s.id) == StepState.DONE)
                    self.engine.post_update(run_id, Actor(person=owner, via="drill"),
                                            f"drill: {done} of {len(sop.steps)} steps done, on with the next")
                for step in sop.steps:
                    if not isinstance(step, HumanStep) or view.state(step.id) != StepState.ACTIVE:
                        continue
                    to = self.hand_over.pop(step.id, None)
                    holder = self.engine.person_for(step.assignee) if to is not None else None
                    if to is not None and to != holder:  # its holder hands it over at once: the new one answers it
                        try:  # (to its holder itself: nothing to hand over, they answer it)
                            self.engine.hand_over(run_id, step.id, Actor(person=holder, via="drill"), to,
                                                  "drill: over to you")
                        except ReportRefused as exc:  # the rota changed under the drill: said, not a traceback
                            raise DrillRefused(f"--hand-over {step.id}={to}: {exc}") from None
                    key = f"{step.id}#{view.steps[step.id].get('round') or 1}#{len(view.approvals(step.id))}"
                    if key not in self._planned:
                        self._planned[key] = self._answer_at(step, view.steps[step.id])
                    if now >= self._planned[key]:
                        self._report(run_id, step, starter)
                time.sleep(0.05)
        except BaseException as exc:
            self._end(run_id, f"the drill stopped before its run ended ({type(exc).__name__}: {exc})"[:500])
            raise
        if self.engine.view(run_id).is_open:
            self._end(run_id, f"the drill gave up after {limit:g}s of wall time with its run still open")
        # the last pages (run finished) may still be on their way: their records end the timeline
        outbox.wait_delivered(self.engine.ledger, run_id, timeout=10.0)
        self._drain(run_id, timeline)

    def _end(self, run_id: str, reason: str) -> None:
        """Cancel the drill's run, its people told why (a run that ended meanwhile is left as it ended)."""
        try:
            if self.engine.view(run_id).is_open:
                self.engine.cancel(run_id, reason, self.starter)
        except Exception:  # noqa: BLE001 - the drill's own error is what its caller must see
            log.exception("event=drill_cancel_failed run=%s", run_id)

    def _verdicts(self, run_id: str, timeline: list[TimelineEntry]) -> tuple[list[dict[str, Any]], bool | None]:
        """Each step's row of the summary and the run's deadline, as the audit judges them (one verdict for the
        drill's table and ``sop audit``): ``deadline`` met, missed, pending, none or n/a; ``deadline_met``
        True, False or None (neither met nor missed)."""
        audit = Audit(self.engine.ledger, now=self.engine.clock.now())
        run = audit.run(run_id)
        rows = []
        for step in run.steps.values():
            began = step.ready_at
            for earlier in step.rounds:  # a round a rejection sent back: a row of its own, with its own ladder
                late = earlier.late
                rows.append({"step": step.id, "state": earlier.state, "actor": earlier.actor, "round": earlier.round,
                             "due": _sop(run.sop_seconds(earlier.ready_at, earlier.due_at)),
                             "took": _sop(run.sop_seconds(earlier.ready_at, earlier.finished_at)),
                             "deadline": {True: MISSED, False: MET}.get(late, "none"),
                             "deadline_met": None if late is None else not late,
                             "escalations": sum(1 for e in step.escalations if earlier.ready_at and earlier.ready_at
                                                <= e.at <= (earlier.finished_at or e.at))})
            verdict = step.deadline(audit.now())
            rows.append({"step": step.id, "state": step.state, "actor": step.actor, "round": step.round,
                         "due": _sop(run.sop_seconds(step.ready_at, step.due_at)),
                         "took": _sop(run.sop_seconds(step.ready_at, step.finished_at)),
                         "deadline": verdict, "deadline_met": {MET: True, MISSED: False}.get(verdict),
                         # its own round's levels (an earlier round's are on that round's row)
                         "escalations": sum(1 for e in step.escalations if not step.rounds or (began and e.at >= began))})
        return rows, {MET: True, MISSED: False}.get(run.deadline(audit.now()))


def _sop(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


__all__ = ["Drill", "DrillResult", "TimelineEntry", "sample_value", "TERMINAL_STEP"]
