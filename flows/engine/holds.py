"""Pausing the clock: a step put on hold, for a reason its SOP declares, until someone releases it.

While a step is on hold its timers (its due instant and its escalation ladder) are stopped:
no reminder, no escalation. When the hold ends its due instant and its armed ladder level
move later by the time held — working time where the step counts business time — and its
timers run again. A hold lasts at most ``max_hold`` (the step's, else the SOP's, else
:data:`DEFAULT_MAX_HOLD`); a durable timer ends it there and escalates to the assignee
role's lead and the run's owner. Every hold and release is recorded with who and how.

Who may hold and release: whoever holds the step (who took it, else the person it went
to), the assignee role's lead and the run's owner, and the operators (``settings.web.operators``).

A whole run may be put on hold too (its owner role's members and the operators, for one of
its SOP's ``waiting_for``): its own hold (a hold row with step ``""``, as its run-level
timers) stops its deadline and status cadence, and every active human step is held for the
same reason (each a step hold recorded with ``run_hold: true``); a step activated while the
run is held starts held. Released (or past the SOP's ``max_hold``, escalating as a step
hold does) they end together: each step's due and the run's deadline move by the time held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flows.clock import local_time
from flows.engine.hold_pages import tell_holders
from flows.engine.inputs import InputRefused, StepNotActive
from flows.engine.links import Claim
from flows.language.actors import Actor, UnknownPerson, as_actor
from flows.language.calendar import business_between, calendar_for, postponed
from flows.language.durations import format_duration
from flows.language.fields import text_problem
from flows.language.steps import human
from flows.language.steps.human import DEFAULT_MAX_HOLD, HumanStep, hold_reasons, max_hold
from flows.ledger import utc
from flows.ledger.schema import holds
from flows.ledger.vocabulary import RecordKind, StepState, TimerKind

log = logging.getLogger("sop.engine")
#: who is told when a hold passes its maximum (ladder words: the assignee role's lead, the run's owner)
HOLD_ESCALATES_TO = ["lead", "owner"]
#: the step id of a run's own hold (as of its run-level timers)
RUN = ""
#: the run's own timers its hold stops: its deadline, its status cadence's asks and checks
RUN_TIMERS = (TimerKind.RUN_DEADLINE, TimerKind.CADENCE, TimerKind.CADENCE_CHECK)


class HoldReasonRefused(InputRefused):
    """A hold's reason is not one the step may wait for (its ``waiting_for``), or it declares none."""


class HoldNoteRefused(InputRefused):
    """A hold's (or release's) note that cannot be kept: longer than free text's bound, or holding a NUL."""


def _checked(note: str) -> str:
    """``note`` when free text may be it; HoldNoteRefused otherwise (a page cut it at 2,000 characters, silently)."""
    problem = text_problem(note, "the note")
    if problem is not None:
        raise HoldNoteRefused([problem])
    return note


class HoldNotAllowed(InputRefused):
    """The person may not hold or release this step (not its holder, its lead, the run's owner or an operator)."""


@dataclass(frozen=True)
class Hold:
    """A step's hold as people read it: why, since when, by whom, and when it ends by itself."""

    number: int
    reason: str
    note: str | None
    held_by: str
    held_via: str
    held_at: datetime
    max_at: datetime


def open_hold(ledger: Any, run_id: str, step_id: str) -> Hold | None:
    """The step's hold that has not ended, read from the ledger (None: it is not on hold)."""
    with ledger.read() as conn:
        row = conn.execute(sa.select(holds).where((holds.c.run_id == run_id) & (holds.c.step_id == step_id)
                                                  & holds.c.released_at.is_(None))).first()
    if row is None:
        return None
    return Hold(row.number, row.reason, row.note, row.held_by, row.held_via, utc(row.held_at),  # type: ignore[arg-type]
                utc(row.max_at))  # type: ignore[arg-type]


def start_hold(change: Any, step: HumanStep, *, reason: str, note: str, held_by: str, max_at: datetime,
               facts: dict[str, Any], run_hold: bool = False) -> int:
    """A step's clock stops: its due and ladder timers stopped, its hold written and recorded (``facts``: how).
    A step held by its run's hold has no maximum of its own (the run's ends it). Returns the hold's number."""
    view, store, now = change.view, change.store, change.clock.now()
    number = store.holds_of(view.id, step.id) + 1
    stopped = store.stop_step_timers(view, step.id, now)
    store.start_hold(run_id=view.id, step_id=step.id, number=number, reason=reason, note=note or None,
                     held_by=held_by, held_via=facts.get("via") or "engine", held_at=now, max_at=max_at,
                     timers=json.dumps(stopped))
    change.update_step(step.id, held_at=now)
    if not run_hold:
        change.arm(step.id, TimerKind.HOLD, f"hold{number}", max_at)
    change.record(RecordKind.STEP_HELD, step.id, actor=held_by, number=number, reason=reason, note=note or None,
                  max_at=max_at, max_hold=format_duration(max_hold(view.sop, step)),
                  due_at=view.steps[step.id].get("due_at"), **facts, **({"run_hold": True} if run_hold else {}))
    return number


def end_hold(change: Any, step: HumanStep, hold: Any, ended: str, actor: Actor | None = None,
             note: str = "", run_hold: bool = False) -> datetime | None:
    """A step's hold ends (``released``, ``expired`` or ``step_ended``): recorded; unless the step ended,
    its stopped timers run again and its due instant moves later by the time held. Returns the new due."""
    view = change.view
    now = change.clock.now()
    held_at = utc(hold.held_at)
    calendar = calendar_for(view.sop, step, change.site)
    anchor = view.run["started_at"]

    def later(instant: datetime) -> datetime:
        return postponed(instant, held_at, now, calendar=calendar, speed=view.speed, anchor=anchor)

    old_due = view.steps[step.id].get("due_at")
    new_due = old_due
    if ended != "step_ended":
        change.store.restart_timers(json.loads(hold.timers), lambda instant, kind: later(instant))
        new_due = later(old_due) if old_due is not None else None
        change.update_step(step.id, held_at=None, due_at=new_due)
        change.store.cancel_step_timers_of(view, step.id, TimerKind.HOLD)
    change.store.end_hold(hold.id, released_at=now, released_by=actor.person if actor else None,
                          released_via=actor.via if actor else None, ended=ended)
    held = (now - held_at) * view.speed
    facts: dict[str, Any] = {"number": hold.number, "reason": hold.reason, "ended": ended, "note": note or None,
                             "held_s": held.total_seconds(), "previous_due_at": old_due, "due_at": new_due,
                             **(actor.facts() if actor else {}), **({"run_hold": True} if run_hold else {})}
    if calendar is not None:
        facts["held_business_s"] = business_between(held_at, now, calendar=calendar, speed=view.speed,
                                                    anchor=anchor).total_seconds()
    change.record(RecordKind.STEP_RELEASED, step.id, actor=actor.person if actor else None, **facts)
    return new_due


class HoldActions:
    """Holds (mixed into ``Engine``, which provides ``transaction``, ``site``, ``clock``, ``overseers``,
    ``person_for``, ``_human_step`` and ``launcher``)."""

    transaction: Any
    site: Any
    clock: Any
    overseers: Any
    person_for: Any
    _human_step: Any

    def _hold_refusal(self, view: Any, step: HumanStep, actor: Actor, holder: str, what: str) -> str | None:
        """Why ``actor`` may not ``what`` the step (None: they may): the one rule of who holds and releases."""
        if actor.person not in self.site.people:
            return str(UnknownPerson(actor.person, self.site))
        if actor.person in {holder} | self.overseers(view, step) or self._operator(actor):
            return None
        return (f"{actor.person} may not {what} step `{step.id}`: only the person the step is with ({holder}), the lead of "
                f"{step.assignee}, the run's owner or an operator may")

    def _operator(self, actor: Actor) -> bool:
        """The actor, or the operator acting for them (``by``), is one of ``settings.web.operators``."""
        return any(human.in_access_list(self.site, who, "operators") for who in (actor.person, actor.by) if who)

    def _check_may_hold(self, change: Any, step: HumanStep, actor: Actor, what: str) -> None:
        """HoldNotAllowed unless ``actor`` holds the step, oversees it, or is an operator."""
        holder = change.person_holding(step)
        refusal = self._hold_refusal(change.view, step, actor, holder, what)
        if refusal is not None:
            raise HoldNotAllowed([refusal])

    def may_hold(self, view: Any, step: HumanStep, person: str) -> bool:
        """Whether ``person`` may put the step on hold and release it (what its page offers them)."""
        if not hold_reasons(view.sop, step):
            return False
        holder = view.steps[step.id].get("claimed_by") or self.person_for(step.assignee)
        return self._hold_refusal(view, step, Actor(person), holder, "put on hold") is None

    def hold(self, run_id: str, step_id: str, actor: Actor | str, reason: str, note: str = "", *,
             link: Claim | None = None) -> datetime:
        """Put an active human step on hold for ``reason`` (one of its ``waiting_for``): its clock stops.

        Returns the instant the hold ends and escalates unless released first. Refused without
        changing anything: an undeclared reason (HoldReasonRefused), a person who may not
        (HoldNotAllowed), a step already on hold or not active (StepNotActive).
        """
        actor, note = as_actor(actor), _checked(note)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            step = self._human_step(view, step_id)
            reasons = hold_reasons(view.sop, step)
            if not reasons:
                raise HoldReasonRefused([f"step `{step.id}` cannot be put on hold: neither it nor {view.sop.id} declares "
                                    "`waiting_for` (the reasons a hold may have)"])
            if reason not in reasons:
                raise HoldReasonRefused([f"`{reason}` is not a reason to hold `{step.id}`: it may wait for "
                                    f"{', '.join(reasons)}"])
            self._check_may_hold(change, step, actor, "put on hold")
            held = t.store.open_hold(view.id, step.id)
            if held is not None:
                raise StepNotActive(f"step `{step.id}` is on hold already (waiting for {held.reason}, "
                                    f"since {local_time(utc(held.held_at), self.site.settings.timezone)})")
            now = self.clock.now()
            if link is not None:
                t.store.use_link(link, action="hold", now=now)
            max_at = change.after(now, max_hold(view.sop, step), step)
            start_hold(change, step, reason=reason, note=note, held_by=actor.person, max_at=max_at,
                       facts=actor.facts())
            tell_holders(change, "step_held", [step], reason=reason, by=actor.person, note=note, max_at=max_at)
        log.info("event=step_held run=%s step=%s actor=%s reason=%s max_at=%s", view.id, step.id,
                 actor.described(), reason, max_at.isoformat())
        return max_at

    def may_hold_run(self, view: Any, person: str) -> bool:
        """Whether ``person`` may put the run on hold and release it (what the run page offers them)."""
        return bool(view.sop.waiting_for) and self._run_hold_refusal(view, Actor(person), "put on hold") is None

    def _run_hold_refusal(self, view: Any, actor: Actor, what: str) -> str | None:
        """Why ``actor`` may not ``what`` the run (None: they may): its owner role's members and the operators."""
        if actor.person not in self.site.people:
            return str(UnknownPerson(actor.person, self.site))
        if actor.person in human.members(self.site, view.sop.owner) or self._operator(actor):
            return None
        return f"{actor.person} may not {what} run {view.id}: only its owner ({view.sop.owner}) or an operator may"

    def hold_run(self, run_id: str, actor: Actor | str, reason: str, note: str = "") -> datetime:
        """Put a whole run on hold for ``reason`` (one of its SOP's ``waiting_for``): its deadline and cadence
        stop, its active human steps are held, and steps it activates start held, until it is released.

        Returns the instant the hold ends and escalates unless released first. Refused without
        changing anything: an undeclared reason (HoldReasonRefused), a person who may not
        (HoldNotAllowed), a run not open or on hold already (StepNotActive).
        """
        actor, note = as_actor(actor), _checked(note)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            reasons = list(view.sop.waiting_for)
            if reason not in reasons:
                raise HoldReasonRefused([f"`{reason}` is not a reason to hold run {view.id}: {view.sop.id} may wait "
                                         f"for {', '.join(reasons)}" if reasons else
                                         f"run {view.id} cannot be put on hold: {view.sop.id} declares no "
                                         "`waiting_for` (the reasons a hold may have)"])
            refusal = self._run_hold_refusal(view, actor, "put on hold")
            if refusal is not None:
                raise HoldNotAllowed([refusal])
            if not view.is_open:
                raise StepNotActive(f"run {view.id} is {view.run['status']}; it cannot be put on hold")
            held = t.store.open_hold(view.id, RUN)
            if held is not None:
                raise StepNotActive(f"run {view.id} is on hold already (waiting for {held.reason}, since "
                                    f"{local_time(utc(held.held_at), self.site.settings.timezone)})")
            now = self.clock.now()
            number = t.store.holds_of(view.id, RUN) + 1
            limit = view.sop.max_hold or DEFAULT_MAX_HOLD
            max_at = change.after(now, limit, None)
            stopped = t.store.stop_step_timers(view, RUN, now, RUN_TIMERS)
            t.store.start_hold(run_id=view.id, step_id=RUN, number=number, reason=reason, note=note or None,
                               held_by=actor.person, held_via=actor.via, held_at=now, max_at=max_at,
                               timers=json.dumps(stopped))
            change.arm(RUN, TimerKind.HOLD, f"hold{number}", max_at)
            steps = [s for s in view.sop.steps if isinstance(s, HumanStep) and view.state(s.id) == StepState.ACTIVE
                     and not view.steps[s.id].get("held_at")]
            change.record(RecordKind.RUN_HELD, actor=actor.person, number=number, reason=reason, note=note or None,
                          max_at=max_at, max_hold=format_duration(limit), deadline_at=view.run["deadline_at"],
                          steps=[s.id for s in steps], **actor.facts())
            for step in steps:
                start_hold(change, step, reason=reason, note=note, held_by=actor.person, max_at=max_at,
                           facts=actor.facts(), run_hold=True)
            tell_holders(change, "step_held", steps, reason=reason, by=actor.person, note=note, whole_run=True,
                         max_at=max_at)
        log.info("event=run_held run=%s actor=%s reason=%s steps=%d max_at=%s", view.id, actor.described(), reason,
                 len(steps), max_at.isoformat())
        return max_at

    def release_run(self, run_id: str, actor: Actor | str, note: str = "") -> datetime | None:
        """End a run's hold: its steps' holds end, its deadline moves by the time held (returned) and runs again."""
        actor, note = as_actor(actor), _checked(note)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            held = t.store.open_hold(view.id, RUN)
            if held is None:
                raise StepNotActive(f"run {view.id} is not on hold")
            refusal = self._run_hold_refusal(view, actor, "release")
            if refusal is not None:
                raise HoldNotAllowed([refusal])
            released = end_run_hold(change, held, "released", actor, note)
            tell_holders(change, "step_released", [view.sop.step(s) for s in released], reason=held.reason,
                         by=actor.person, note=note, whole_run=True)
        log.info("event=run_released run=%s actor=%s deadline_at=%s", view.id, actor.described(),
                 view.run["deadline_at"].isoformat() if view.run["deadline_at"] else "-")
        return view.run["deadline_at"]

    def release(self, run_id: str, step_id: str, actor: Actor | str, note: str = "", *,
                link: Claim | None = None) -> datetime | None:
        """End a step's hold: its clock runs again, its due instant moved by the time held (returned)."""
        actor, note = as_actor(actor), _checked(note)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            step = self._human_step(view, step_id)
            held, run_held = t.store.step_hold(view.id, step.id)
            if held is None:
                raise StepNotActive(f"step `{step.id}` is not on hold")
            if run_held is not None:
                raise StepNotActive(f"step `{step.id}` is on hold with its run (waiting for {run_held.reason}): "
                                    f"release the run")
            self._check_may_hold(change, step, actor, "release")
            if link is not None:
                t.store.use_link(link, action="release", now=self.clock.now())
            due = end_hold(change, step, held, "released", actor, note)
            tell_holders(change, "step_released", [step], reason=held.reason, by=actor.person, note=note)
        log.info("event=step_released run=%s step=%s actor=%s due_at=%s", view.id, step.id, actor.described(),
                 due.isoformat() if due else "-")
        return due


def hold_with_run(change: Any, step: HumanStep) -> None:
    """A human step activated while its run is on hold starts held, for the run's reason (its clock stopped)."""
    held = change.store.open_hold(change.view.id, RUN)
    if held is not None:
        start_hold(change, step, reason=held.reason, note=held.note or "", held_by=held.held_by,
                   max_at=utc(held.max_at), facts={"via": held.held_via}, run_hold=True)  # type: ignore[arg-type]


def end_run_hold(change: Any, hold: Any, ended: str, actor: Actor | None = None, note: str = "") -> list[str]:
    """A run's hold ends (``released``, ``expired``, ``run_ended``): its steps' holds end with it (their dues
    move); unless the run ended, its deadline and cadence run again, moved by the time held. Recorded once
    for the run (``run_released``). Returns the steps it released."""
    view, store, now = change.view, change.store, change.clock.now()
    steps = []
    for row in store.holds_under(view.id, hold.id):
        end_hold(change, view.sop.step(row.step_id), row, ended, actor, note, run_hold=True)
        steps.append(row.step_id)
    held_at = utc(hold.held_at)
    calendar = calendar_for(view.sop, None, change.site)
    anchor = view.run["started_at"]

    def later(instant: datetime, kind: str) -> datetime:  # the cadence counts wall time, the deadline its calendar
        return postponed(instant, held_at, now, calendar=calendar if kind == TimerKind.RUN_DEADLINE else None,
                         speed=view.speed, anchor=anchor)

    old = new = view.run["deadline_at"]
    if ended != "run_ended":
        store.restart_timers(json.loads(hold.timers), later)
        if old is not None:
            new = later(old, TimerKind.RUN_DEADLINE)
            store.update_run(view, deadline_at=new)
        store.cancel_step_timers_of(view, RUN, TimerKind.HOLD)
    store.end_hold(hold.id, released_at=now, released_by=actor.person if actor else None,
                   released_via=actor.via if actor else None, ended=ended)
    facts: dict[str, Any] = {"number": hold.number, "reason": hold.reason, "ended": ended, "note": note or None,
                             "held_s": ((now - held_at) * view.speed).total_seconds(), "steps": steps,
                             "previous_deadline_at": old, "deadline_at": new, **(actor.facts() if actor else {})}
    if calendar is not None:
        facts["held_business_s"] = business_between(held_at, now, calendar=calendar, speed=view.speed,
                                                    anchor=anchor).total_seconds()
    change.record(RecordKind.RUN_RELEASED, actor=actor.person if actor else None, **facts)
    return steps


def run_hold_expired(change: Any, level: str, late_ms: int, late: bool) -> bool:
    """The run hold's timer fires: if that hold is still on, it ends and each of its steps escalates as a step
    hold past its maximum does. True when it acted."""
    held = change.store.open_hold(change.view.id, RUN)
    if held is None or f"hold{held.number}" != level.split(":", 1)[-1]:
        return False
    limit = change.view.sop.max_hold or DEFAULT_MAX_HOLD
    released = end_run_hold(change, held, "expired")
    tell_holders(change, "step_released", [change.view.sop.step(s) for s in released], reason=held.reason, by=None,
                 whole_run=True)
    for step_id in released:
        change.page("escalated", step_id, HOLD_ESCALATES_TO,
                    level={"key": f"hold{held.number}", "message": "escalated", "late_ms": late_ms,
                           "hold_reason": held.reason, "max_hold": format_duration(limit), "held_by": held.held_by})
    log.info("event=run_hold_expired run=%s reason=%s late=%s", change.view.id, held.reason, late)
    return True


def hold_expired(change: Any, step: HumanStep, level: str, late_ms: int, late: bool) -> bool:
    """The hold timer ``hold<n>`` fires: if that hold is still on, it ends and escalates. True when it acted."""
    held = change.store.open_hold(change.view.id, step.id)
    if held is None or f"hold{held.number}" != level.split(":", 1)[-1]:
        return False  # released meanwhile (fenced: the timer was cancelled, or it is another hold's)
    end_hold(change, step, held, "expired")
    tell_holders(change, "step_released", [step], reason=held.reason, by=None)
    limit = max_hold(change.view.sop, step)
    change.page("escalated", step.id, HOLD_ESCALATES_TO,
                level={"key": f"hold{held.number}", "message": "escalated", "late_ms": late_ms,
                       "hold_reason": held.reason, "max_hold": format_duration(limit), "held_by": held.held_by})
    log.info("event=hold_expired run=%s step=%s reason=%s late=%s", change.view.id, step.id, held.reason, late)
    return True
