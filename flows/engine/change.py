"""One change to one run, inside one ledger transaction: the moves of the state machine.

A :class:`RunChange` holds the run as this transaction read it (its :class:`RunView`,
kept current as steps move), the run store the change writes through, and the pages it
decides. Its methods are the moves a run can make — a step becoming ready, active or
finished, a timer armed or disarmed, the run finishing — each checked against the
allowed state transitions (``flows.ledger.vocabulary``) and recorded in the chain. The
engine (``flows.engine.transitions``) and the timer service (``flows.engine.timers``)
decide *which* moves to make; neither writes a row itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flows.engine import participants
from flows.engine.hold_pages import paused
from flows.engine.holds import RUN, end_hold, end_run_hold, hold_with_run
from flows.engine.oncall import Rota, resolve_targets
from flows.engine.store import OUTCOME_CHARS, RunStore
from flows.engine.view import RunView, deadline_met, variables
from flows.language.calendar import calendar_for, calendar_name, instant_after, postponed
from flows.language.expressions import evaluate
from flows.language.graph import StepGraph
from flows.language.ladder import levels
from flows.language.presentation import CONDITION_NOT_MET
from flows.language.steps import KINDS
from flows.language.steps.base import StepBase
from flows.language.steps.human import HumanStep, rework_loop
from flows.language.urgency import queue_rank
from flows.ledger import utc
from flows.ledger.vocabulary import TERMINAL_STEP, RecordKind, RunStatus, StepState, TimerKind, may_move

log = logging.getLogger("sop.engine")
#: the reason of a step failed because its ``when`` raised (a type error, an empty optional field): nobody was asked
WHEN_FAILED = "`when` could not be evaluated"


class IllegalMove(RuntimeError):
    """A step asked to move to a state its state may not move to (a bug, never a user's error)."""


@dataclass
class Page:
    """A notification decided inside a transaction: queued in its outbox there, sent after it commits."""

    kind: str
    run_id: str
    step_id: str | None
    targets: list[str]
    level: dict[str, Any] | None = None
    #: its outbox row (see flows.engine.outbox), once queued
    outbox_id: int | None = None
    #: left to a pager process (this process does not deliver it)
    deferred: bool = False
    #: the roles it reaches resolved to people when it was decided: role → ``OnCall.facts()``
    on_call: dict[str, dict[str, Any]] | None = None
    #: its place in a backlogged outbox, lowest first (``flows.language.urgency.queue_rank``)
    urgency: int = 0


@dataclass
class Ended:
    """A run that ended in this transaction (finished or cancelled): its follow-ups are decided before it commits."""

    view: RunView
    outcome: str  # done | rejected | failed | cancelled (``run.outcome`` in a follow-up's templates)
    at: datetime
    deadline_met: bool | None


@dataclass
class Plan:
    """What the flow should do next: run these automated steps, or stop (run finished)."""

    automated: list[str] = field(default_factory=list)
    finished: bool = False
    #: the run's time compression: the automated steps' retry delays and timeouts are on its clock
    speed: float = 1.0
    #: the SOP version the run was started with (its pinned text): the automated steps to run are its own
    sop: Any = None


class RunChange:
    """The moves of one run within one transaction (see the module's docstring)."""

    def __init__(self, store: RunStore, view: RunView, site: Any, pages: list[Page], ended: list[Ended] | None = None):
        self.store = store
        self.view = view
        self.site = site
        self.pages = pages
        #: runs this transaction ended, for their follow-ups (``flows.engine.followups``)
        self.ended = ended if ended is not None else []
        self.clock = store.clock
        self._rota: Rota | None = None

    @property
    def id(self) -> str:
        return self.view.id

    @property
    def rota(self) -> Rota:
        """Who is on call for each role now (overrides read once per change, on its transaction)."""
        if self._rota is None:
            self._rota = Rota(self.site, self.store.conn, self.clock.now())
        return self._rota

    def holder(self, step_id: str | None) -> str | None:
        """The member who claimed the step ("I'll take it"): its pages for `assignee` go to them."""
        return self.view.steps[step_id].get("claimed_by") if step_id in self.view.steps else None

    def person_holding(self, step: HumanStep) -> str:
        """Whom a human step is with now: who took it (or was handed it), else the person its role means now."""
        return self.view.steps[step.id].get("claimed_by") or self.rota.person_for(step.assignee)

    # --- records and pages ------------------------------------------------------------------

    def record(self, kind: str, step_id: str | None = None, *, actor: str | None = None, at: datetime | None = None,
               **data: Any) -> int:
        """Append a record about this run."""
        return self.store.record(kind, self.id, step_id, actor=actor, at=at, **data)

    def page(self, kind: str, step_id: str | None, targets: list[str], level: dict[str, Any] | None = None) -> None:
        """Tell people (sent once the transaction commits), its roles resolved to who is on call now."""
        self.pages.append(Page(kind, self.id, step_id, list(targets), level=level,
                               on_call=self.on_call_of(targets, step_id),
                               urgency=queue_rank(self.view.sop.class_, kind, self.view.run.get("outcome"))))

    def on_call_of(self, targets: list[str], step_id: str | None) -> dict[str, dict[str, Any]]:
        """The roles ``targets`` reach (ladder words resolved), each as who is on call now and why."""
        step = self.view.sop.step(step_id) if step_id else None
        rota = self.rota
        try:
            names = resolve_targets(targets, self.view.sop, step, self.site, holder=self.holder(step_id),
                                    on_call=rota.on_call)
            roles = [n.partition(":")[2] if n.startswith("role:") else n for n in names]
            return {r: rota.on_call(r).facts() for r in roles if r in self.site.roles}
        except Exception:  # never a transition lost to a page's people: the pager resolves them when it sends
            log.exception("event=on_call_unresolved run=%s step=%s targets=%s", self.id, step_id or "-", targets)
            return {}

    def people_paged(self, targets: list[str], step_id: str | None, asked_by: str | None = None) -> list[str]:
        """The people a page to ``targets`` reaches now (roles as who is on call, channels left out), as the pager
        sends it (who asked for help is left out unless nobody else is; in a drill that names its people, anyone
        else: ``flows.engine.participants``): an escalation records them, so its step's page can say whom it paged.
        Empty when they cannot be resolved (the pager says why when it sends).

        Resolved here as ``notifications.recipients`` does (a role is its primary), without importing it: this runs
        inside a write transaction, and that package brings Apprise (~0.85 s the first time)."""
        step = self.view.sop.step(step_id) if step_id else None
        try:
            names = resolve_targets(targets, self.view.sop, step, self.site, holder=self.holder(step_id),
                                    on_call=self.rota.on_call)
            people: list[str] = []
            for name in names:
                kind, colon, bare = name.partition(":")
                kind, bare = (kind, bare) if colon else (self.site.kind_of(name), name)
                person = self.rota.person_for(bare) if kind == "role" else bare if kind == "person" else None
                if person is not None and person not in people:
                    people.append(person)
        except Exception:  # never a transition lost to a page's people
            log.exception("event=paged_unresolved run=%s step=%s targets=%s", self.id, step_id or "-", targets)
            return []
        people = [p for p in people if p != asked_by] or people
        taking_part = participants.taking_part(self.view)  # a drill that names its people pages no one else
        return people if taking_part is None else [p for p in people if p in taking_part]

    def reached(self, targets: list[str], step_id: str | None, without: str | None = None) -> list[str]:
        """Each of ``targets`` (ladder words, roles, people) with whom it reaches now (``lead (chen-jie)``), of the
        people :meth:`people_paged` says the page reaches (``without``, who asked for help, left out unless alone);
        a target that reaches no one of them is left out."""
        paged = self.people_paged(targets, step_id, without)
        out = []
        for target in targets:
            every = self.people_paged([target], step_id)
            people = [p for p in every if p in paged]
            if every and not people:
                continue
            out.append(f"{target} ({', '.join(people)})" if people and people != [target] else target)
        return out

    # --- timers -----------------------------------------------------------------------------

    def arm(self, step_id: str, kind: TimerKind, level: str, due_at: datetime) -> None:
        """Arm a durable timer for this run (once per step, kind, level and rework round)."""
        round_ = self.view.steps.get(step_id, {}).get("round") or 1
        self.store.arm(self.view, step_id, kind, f"r{round_}:{level}" if round_ > 1 else level, due_at)

    def after(self, start: datetime, duration: Any, step: StepBase | None) -> datetime:
        """The instant ``duration`` of SOP time after ``start`` for this run (a step's, or the run's own):
        its speed, and its calendar's working time where one applies (``flows.language.calendar``)."""
        return instant_after(start, duration, calendar=calendar_for(self.view.sop, step, self.site),
                             speed=self.view.speed, anchor=self.view.run["started_at"])

    def held_past(self, step: StepBase, instant: datetime) -> datetime:
        """``instant`` moved later by the step's holds that ended (its clock stopped while it was held)."""
        if self.store.is_new(self.view.id):
            return instant
        calendar = calendar_for(self.view.sop, step, self.site)
        for held_from, held_to in self.store.ended_holds(self.view.id, step.id):
            instant = postponed(instant, held_from, held_to, calendar=calendar, speed=self.view.speed,
                                anchor=self.view.run["started_at"])
        return instant

    def arm_after_ready(self, step: StepBase, level: Any) -> None:
        """Arm a ladder level of a step: at its offset from when the step became ready, plus its time on hold and
        the graces its hand-overs gave its ladder (:meth:`ladder_grace`)."""
        ready_at = self.view.steps[step.id]["ready_at"]
        instant = self.held_past(step, self.after(ready_at, level.offset, step))
        calendar = calendar_for(self.view.sop, step, self.site)
        for moved_from, moved_to in self.store.ladder_graces(self.view.id, step.id, ready_at):
            instant = postponed(instant, moved_from, moved_to, calendar=calendar, speed=self.view.speed,
                                anchor=self.view.run["started_at"])
        self.arm(step.id, TimerKind.LADDER, level.key, instant)

    def ladder_grace(self, step: HumanStep, now: datetime) -> tuple[datetime, datetime] | None:
        """A hand-over gives the new holder one rung of the ladder before it pages anyone again: the step's armed
        ladder level, when it would fire sooner, moves to one rung's gap after ``now`` (its offset less the
        previous level's: for a repeat, its period), and every later level moves as much (:meth:`arm_after_ready`).

        Returns the armed level's move (its old instant, its new one) for the hand-over's record, which keeps it
        for the later levels; None when nothing moved (no level armed: none left, or the step is on hold)."""
        armed = self.store.armed_ladder(self.id, step.id)
        if armed is None:
            return None
        key = ladder_key(armed.level)
        previous = None
        for level in levels(self.view.sop.ladder_for(step), step.due):
            if level.key == key:
                gap = level.offset - (previous.offset if previous is not None else timedelta(0))
                break
            previous = level
        else:
            return None
        due = utc(armed.due_at)
        later = self.after(now, gap, step)
        deadline = self.view.steps[step.id].get("due_at")
        if step.on_timeout is not None and deadline is not None:  # the deadline ends the step: the rung still
            later = min(later, utc(deadline))                      # reaches its people before it does
        if later <= due:
            return None
        self.store.move_timer(armed.id, later)
        return due, later

    def escalate(self, step: HumanStep, key: str, *, due_at: datetime | None, late_ms: int | None, late: bool,
                 asked_by: str | None = None) -> list[str] | None:
        """Ladder level ``key`` of a step fires: recorded, its people paged, the next level armed.

        ``asked_by``: it fires early because the holder asked for help. None when the pinned
        SOP has no such level.
        """
        ladder = list(levels(self.view.sop.ladder_for(step), step.due))
        key = ladder_key(key)
        index = next((i for i, lvl in enumerate(ladder) if lvl.key == key), None)
        if index is None:
            return None
        level = ladder[index]
        extra: dict[str, Any] = {"asked_by": asked_by} if asked_by else {}
        holder = self.holder(step.id)
        if holder:
            extra["holder"] = holder
        on_call = self.on_call_of(list(level.notify), step.id)
        if any(f["source"] != "fixed" for f in on_call.values()):  # who was on call, and why (fixed: config says)
            extra["on_call"] = on_call
        self.record(RecordKind.ESCALATION, step.id, level=level.key, message=level.message,
                    notify=list(level.notify), paged=self.people_paged(list(level.notify), step.id, asked_by),
                    due_at=due_at, late_ms=late_ms, late=late, **extra)
        kind = "escalated" if asked_by else level.message
        self.page(kind, step.id, list(level.notify),
                  level={"key": level.key, "message": kind, "late_ms": late_ms, **extra})
        if index + 1 < len(ladder):
            self.arm_after_ready(step, ladder[index + 1])
        return list(level.notify)

    def help_levels(self, step: HumanStep, armed_key: str | None) -> list[Any]:
        """The ladder levels from ``armed_key`` on that reach beyond the assignee (who asks for help)."""
        ladder = list(levels(self.view.sop.ladder_for(step), step.due))
        armed_key = ladder_key(armed_key) if armed_key is not None else None
        start = next((i for i, lvl in enumerate(ladder) if lvl.key == armed_key), len(ladder))
        return [lvl for lvl in ladder[start:] if set(lvl.notify) - {"assignee"}]

    # --- steps ------------------------------------------------------------------------------

    def update_step(self, step_id: str, **values: Any) -> None:
        """Write a step's row (a state given is checked against the allowed moves)."""
        state = values.get("state")
        if state is not None:
            self._check_move(step_id, state)
        self.store.update_step(self.view, step_id, **values)

    def _check_move(self, step_id: str, state: str) -> None:
        old = self.view.state(step_id)
        if not may_move(old, state):
            raise IllegalMove(f"run {self.id} step {step_id}: {old} may not become {state}")

    def set_step(self, step_id: str, state: StepState, *, reason: str | None = None,
                 result: dict[str, Any] | None = None, actor: str | None = None, note: str | None = None,
                 ready_at: datetime | None = None, facts: dict[str, Any] | None = None) -> None:
        """A step ends in ``state``: recorded, its timers disarmed, a fallback it no longer needs skipped."""
        now = self.clock.now()
        row = self.view.steps[step_id]
        met = None
        if row.get("due_at") is not None and state in (StepState.DONE, StepState.REJECTED) \
                and self.view.sop.step(step_id).judged:  # a wait has no deadline: its due instant is its end
            met = now <= row["due_at"]
        values: dict[str, Any] = {"state": state, "finished_at": now, "deadline_met": met}
        if result is not None:
            from flows.ledger import dumps

            values["result"] = dumps(result)
        if actor is not None:
            values["actor"] = actor
        if note is not None or reason is not None:
            values["note"] = note if note is not None else reason
        if ready_at is not None:
            values["ready_at"] = ready_at
        if row.get("held_at") is not None:  # ended while on hold: the hold ends with it
            held = self.store.open_hold(self.id, step_id)
            if held is not None:
                end_hold(self, self.view.sop.step(step_id), held, "step_ended")  # type: ignore[arg-type]
        self.update_step(step_id, **values)
        self.record(RecordKind.step_ended(state), step_id, actor=actor, reason=reason, result=result, note=note,
                    deadline_met=met, **(facts or {}))
        self.store.cancel_timers(self.view, step_id)
        step = self.view.sop.step(step_id)
        if state == StepState.FAILED and (KINDS[step.kind].automated or step.kind == "check"
                                          or (reason or "").startswith(WHEN_FAILED)):
            # the owner learns at once: someone may have to do it by hand (a person's step that failed by its
            # on_timeout is paged as step_timed_out; one whose `when` failed was never asked of anyone)
            self.page("step_failed", step_id, [self.view.sop.owner], level={"reason": reason or "no reason given"})
        fallback = step.fallback
        if state != StepState.TIMED_OUT and fallback and self.view.steps.get(fallback, {}).get("state") == StepState.STANDBY:
            # the step finished without timing out: its stand-in is not needed, and whatever waits on it may go
            self.set_step(fallback, StepState.SKIPPED, reason=f"fallback of {step_id}, not needed")

    def rework(self, step: HumanStep, by: str, note: str) -> int | None:
        """A rejection of ``step`` sends the work back (``on_reject``): the loop's steps are asked again.

        Returns the new round, or None when there is no loop or ``max_rounds`` is reached (the
        rejection stands). The earlier rounds stay in the chain; each reopened step is recorded.
        """
        round_ = (self.view.steps[step.id].get("round") or 1) + 1
        loop = rework_loop(self.view.sop, step)
        if not loop or round_ > step.max_rounds:
            return None
        for step_id in loop:
            if self.view.state(step_id) not in (StepState.DONE, StepState.REJECTED, StepState.SKIPPED):
                continue  # still open (a parallel step of the loop): it goes on as it is
            self.store.cancel_timers(self.view, step_id)
            self.update_step(step_id, state=StepState.PENDING, round=round_, ready_at=None, due_at=None,
                             finished_at=None, actor=None, result=None, approvals=None, deadline_met=None,
                             claimed_by=None, claimed_at=None,
                             note=f"sent back by {by} from {step.id}: {note}" if step_id == loop[0] else None)
            self.record(RecordKind.STEP_REOPENED, step_id, round=round_, cause=step.id, by=by, note=note)
        return round_

    def release_fallback(self, step_id: str) -> None:
        """A step timed out: its fallback (standby) is wanted now."""
        if self.view.state(step_id) == StepState.STANDBY:
            self.update_step(step_id, state=StepState.PENDING)

    def assign(self, step: HumanStep, now: datetime) -> None:
        """A human step is asked of its assignee (a role: who is on call now): due instant, its timers, a page."""
        due_at = self.after(now, step.due, step) if step.due else None
        self.update_step(step.id, state=StepState.ACTIVE, ready_at=now, due_at=due_at)
        extra: dict[str, Any] = {}
        calendar = calendar_name(self.view.sop, step, self.site)
        if calendar is not None and calendar in self.site.calendars:  # business time: the wall-time due beside it
            extra["calendar"] = calendar
            if step.due:
                extra["wall_due_at"] = instant_after(now, step.due, speed=self.view.speed)
        if step.assignee in self.site.roles:
            answer = self.rota.on_call(step.assignee)
            person = answer.primary
            if answer.source != "fixed":  # who was on call, and why (fixed: config says)
                extra["on_call"] = answer.facts()
        else:
            person = step.assignee
        self.record(RecordKind.STEP_ASSIGNED, step.id, at=now, assignee=step.assignee, person=person, due_at=due_at,
                    **extra)
        if due_at is not None:
            self.arm(step.id, TimerKind.DUE, "", due_at)
        first = next(levels(self.view.sop.ladder_for(step), step.due, limit=1), None)
        if first is not None:
            self.arm(step.id, TimerKind.LADDER, first.key, self.after(now, first.offset, step))
        if not self.store.is_new(self.id):  # activated while its run is on hold: it starts held
            hold_with_run(self, step)
        # started held: its assignee reads at once that it is paused (by whom, why) and its clock stopped
        self.page("assigned", step.id, [step.assignee], level=paused(self, step.id) or None)

    # --- advancing --------------------------------------------------------------------------

    def advance(self) -> Plan:
        """Make every step whose needs are met ready (or skipped); finish the run when all are."""
        view = self.view
        if not view.is_open:
            return Plan(finished=True)
        changed = True
        while changed:
            changed = False
            for step in view.sop.steps:
                if view.state(step.id) == StepState.PENDING and self._try_activate(step):
                    changed = True  # the view's step rows are kept current in memory: no reload
        automated = [s.id for s in view.sop.steps if view.state(s.id) in (StepState.READY, StepState.RUNNING)]
        finished = all(view.state(s.id) in (*TERMINAL_STEP, StepState.STANDBY) for s in view.sop.steps)
        if finished:
            self.finish()
        return Plan(automated=automated, finished=finished, speed=view.speed, sop=view.sop)

    def _try_activate(self, step: Any) -> bool:
        view = self.view
        deps = view.sop.dependencies(step)
        states = {d: view.state(d) for d in deps}
        if any(s not in TERMINAL_STEP or self._falling_back(d, s) for d, s in states.items()):
            return False  # still waiting on an upstream step (or on the fallback that took one over)
        blocked = [d for d, s in states.items() if not self._satisfied(d, s)]
        if blocked:
            reason = ", ".join(f"{d} {states[d]}" for d in blocked)
            self.set_step(step.id, StepState.BLOCKED, reason=f"upstream: {reason}")
            return True
        for dep in deps:
            parent = view.sop.step(dep)
            if parent.branches() and parent.skips(step.id, view.result(dep)):
                self.set_step(step.id, StepState.SKIPPED, reason=f"branch of {dep} not taken")
                return True
        # the template variables cost more than the rest of an activation: built only when read
        context = variables(view, self.site) if step.when else None
        if step.when:
            try:
                go = bool(evaluate(step.when, context))
            except Exception as exc:  # a template error at run time: fail the step, say why
                self.set_step(step.id, StepState.FAILED, reason=f"{WHEN_FAILED}: {exc}")
                return True
            if not go:
                self.set_step(step.id, StepState.SKIPPED, reason=CONDITION_NOT_MET, facts={"when": step.when})
                return True
        # the kind decides: assigned (human), a timer (wait), evaluated (check), ready for its task (automated)
        KINDS[step.kind].activate(step, _Activation(self, step, self.clock.now(), context))
        return True

    def _falling_back(self, dep: str, state: str) -> bool:
        """Whether ``dep`` timed out and its fallback, which took it over, has not ended yet: what needs it waits for
        that one (and goes on once it is done), rather than being blocked the moment ``dep`` timed out. Not when the
        fallback itself needs ``dep`` (refused by ``sop validate``; a run pinned before): it would wait for ever."""
        fallback = self.view.sop.step(dep).fallback if state == StepState.TIMED_OUT else None
        return (fallback is not None and self.view.state(fallback) not in TERMINAL_STEP
                and dep not in StepGraph(self.view.sop).upstream(fallback))  # (read only after a time-out)

    def _satisfied(self, dep: str, state: str) -> bool:
        if state in (StepState.DONE, StepState.SKIPPED):
            return True
        fallback = self.view.sop.step(dep).fallback
        return state == StepState.TIMED_OUT and fallback is not None and self.view.state(fallback) == StepState.DONE

    def finish(self) -> None:
        """Every step ended: the run finishes with its outcome, its timers disarmed, its owner told."""
        view = self.view
        for s in view.sop.steps:
            if view.state(s.id) == StepState.STANDBY:
                self.set_step(s.id, StepState.SKIPPED, reason="fallback not needed")
        states = [view.state(s.id) for s in view.sop.steps]
        outcome = "failed" if StepState.FAILED in states else "rejected" if StepState.REJECTED in states else "done"
        now = self.clock.now()
        met = deadline_met(view.run["deadline_at"], outcome, now) is not False  # a run without one: recorded met
        self._end_run_hold()
        self.store.update_run(view, status=RunStatus.FINISHED, outcome=outcome, finished_at=now, open_key=None,
                              nudge=False)
        self.record(RecordKind.RUN_FINISHED, outcome=outcome, deadline_met=met)
        self.store.cancel_timers(view, None)
        starter = self.starter()
        failed = [p for p in self.pages if p.kind == "step_failed" and p.run_id == view.id]
        if failed:
            # a failure that ends its run in the same change is one page: step_failed says why, that the run
            # ended, and how each step stands (the owner is told once, not twice within the second); who
            # started the run learns of its end from it too
            failed[-1].targets = list(dict.fromkeys([*failed[-1].targets, *starter]))
        else:
            self.page("run_finished", None, [view.sop.owner, *starter])
        self.ended.append(Ended(view, outcome, now, met))
        log.info("event=run_finished run=%s outcome=%s deadline_met=%s", view.id, outcome, met)

    def starter(self) -> list[str]:
        """Who started the run, when a person did (from the board, `sop run`, `sop drill --as`): told of its end
        beside its owner (a game day's ops manager need not look). Empty for a machine (``alertmanager``, a
        schedule, ``drill`` with no person) and for a follow-up (its parent run started it)."""
        initiator = self.view.run["initiator"]
        return [initiator] if initiator in self.site.people else []

    def _end_run_hold(self) -> None:
        """The run ends while on hold: its hold ends with it (its steps' holds ended as the steps did)."""
        held = None if self.store.is_new(self.id) else self.store.open_hold(self.id, RUN)
        if held is not None:
            end_run_hold(self, held, "run_ended")

    def cancel(self, reason: str, actor: str | None, facts: dict[str, Any] | None = None) -> None:
        """Stop the run: open steps cancelled, timers disarmed, the owner and the people asked told.

        ``facts``: how the cancel came (``Actor.facts``), recorded beside its actor."""
        view = self.view
        active = [s for s, r in view.steps.items() if r["state"] == StepState.ACTIVE]
        for step_id in active:  # a hold ends with its run
            held = self.store.open_hold(self.id, step_id) if view.steps[step_id].get("held_at") else None
            if held is not None:
                end_hold(self, view.sop.step(step_id), held, "step_ended")  # type: ignore[arg-type]
        self._end_run_hold()
        now = self.clock.now()
        self.store.cancel_open_steps(view, now)
        outcome = f"cancelled: {reason}"
        if len(outcome) > OUTCOME_CHARS:  # the run's listing shows its start, the record and the page all of it
            outcome = outcome[:OUTCOME_CHARS - 1] + "…"
        self.store.update_run(view, status=RunStatus.CANCELLED, outcome=outcome, finished_at=now,
                              open_key=None, nudge=False)
        self.record(RecordKind.RUN_CANCELLED, actor=actor, reason=reason, **(facts or {}))
        self.store.cancel_timers(view, None)
        deadline = view.run["deadline_at"]
        self.ended.append(Ended(view, "cancelled", now, None if deadline is None else now <= deadline))
        targets = [view.sop.owner, *[view.sop.step(s).assignee for s in active  # type: ignore[attr-defined]
                                     if isinstance(view.sop.step(s), HumanStep)]]
        self.page("run_cancelled", None, list(dict.fromkeys(targets)), level={"reason": reason, "by": actor})


class _Activation:
    """A change's side of a step kind's ``activate`` (``flows.language.steps.base.Activation``): one step's turn."""

    __slots__ = ("_change", "_context", "_step", "now", "speed")

    def __init__(self, change: RunChange, step: Any, now: datetime, context: dict[str, Any] | None):
        self._change, self._step, self._context = change, step, context
        self.now, self.speed = now, change.view.speed

    def variables(self) -> dict[str, Any]:
        if self._context is None:
            self._context = variables(self._change.view, self._change.site)
        return self._context

    def assign(self) -> None:
        self._change.assign(self._step, self.now)

    def wait_until(self, until: datetime) -> None:
        change, step_id = self._change, self._step.id
        change.update_step(step_id, state=StepState.ACTIVE, ready_at=self.now, due_at=until)
        change.record(RecordKind.STEP_WAITING, step_id, until=until)
        change.arm(step_id, TimerKind.WAIT, "", until)

    def finish(self, outputs: dict[str, Any]) -> None:
        self._change.set_step(self._step.id, StepState.DONE, result=outputs, ready_at=self.now)

    def fail(self, reason: str) -> None:
        self._change.set_step(self._step.id, StepState.FAILED, reason=reason)

    def ready(self) -> None:
        self._change.update_step(self._step.id, state=StepState.READY, ready_at=self.now)
        self._change.record(RecordKind.STEP_READY, self._step.id, step_kind=self._step.kind)


class Transaction:
    """The engine's view of one ledger transaction: its run store, and the pages its changes decide."""

    def __init__(self, store: RunStore, site: Any):
        self.store = store
        self.site = site
        self.pages: list[Page] = []
        #: runs its changes ended: their follow-ups start before it commits (``Engine.transaction``)
        self.ended: list[Ended] = []

    def change(self, run: str | RunView) -> RunChange:
        """A change to this run (by id, or its view read in this transaction)."""
        view = run if isinstance(run, RunView) else self.store.load(run)
        return RunChange(self.store, view, self.site, self.pages, self.ended)


def ladder_key(level: str) -> str:
    """A ladder level's key from its timer's level (``r2:1`` in a rework's second round is level ``1``)."""
    return level.split(":", 1)[1] if level.startswith("r") and ":" in level else level
