"""Pausing the clock: a step put on hold, for a reason its SOP declares, until someone releases it.

While a step is on hold its timers (its due instant and its escalation ladder) are stopped:
no reminder, no escalation. When the hold ends its due instant and its armed ladder level
move later by the time held — working time where the step counts business time — and its
timers run again. A hold lasts at most ``max_hold`` (the step's, else the SOP's, else
:data:`DEFAULT_MAX_HOLD`); a durable timer ends it there and escalates to the assignee
role's lead and the run's owner. Every hold and release is recorded with who and how.

Who may hold and release: whoever holds the step (who took it, else the person it went
to), the assignee role's lead and the run's owner, and the operators (``settings.web.operators``).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from flows.engine.inputs import InputRefused, StepNotActive
from flows.engine.links import Claim
from flows.language.actors import Actor, UnknownPerson, as_actor
from flows.language.calendar import business_between, calendar_for, postponed
from flows.language.durations import format_duration
from flows.language.steps import human
from flows.language.steps.human import HumanStep
from flows.ledger import utc
from flows.ledger.vocabulary import RecordKind, TimerKind

log = logging.getLogger("sop.engine")
#: how long a hold may last when neither the step nor its SOP says (``max_hold``)
DEFAULT_MAX_HOLD = timedelta(days=1)
#: who is told when a hold passes its maximum (ladder words: the assignee role's lead, the run's owner)
HOLD_ESCALATES_TO = ["lead", "owner"]


def hold_reasons(sop: Any, step: HumanStep) -> list[str]:
    """What a step may be put on hold for: its own ``waiting_for``, else its SOP's (empty: no holds)."""
    return list(step.waiting_for if step.waiting_for is not None else sop.waiting_for)


def max_hold(sop: Any, step: HumanStep) -> timedelta:
    """How long a hold of this step may last before it ends and escalates."""
    return step.max_hold or sop.max_hold or DEFAULT_MAX_HOLD


def end_hold(change: Any, step: HumanStep, hold: Any, ended: str, actor: Actor | None = None,
             note: str = "") -> datetime | None:
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
        change.store.restart_timers(json.loads(hold.timers), later)
        new_due = later(old_due) if old_due is not None else None
        change.update_step(step.id, held_at=None, due_at=new_due)
        change.store.cancel_step_timers_of(view, step.id, TimerKind.HOLD)
    change.store.end_hold(hold.id, released_at=now, released_by=actor.person if actor else None,
                          released_via=actor.via if actor else None, ended=ended)
    held = (now - held_at) * view.speed
    facts: dict[str, Any] = {"number": hold.number, "reason": hold.reason, "ended": ended, "note": note or None,
                             "held_s": held.total_seconds(), "previous_due_at": old_due, "due_at": new_due,
                             **(actor.facts() if actor else {})}
    if calendar is not None:
        facts["held_business_s"] = business_between(held_at, now, calendar=calendar, speed=view.speed,
                                                    anchor=anchor).total_seconds()
    change.record(RecordKind.STEP_RELEASED, step.id, actor=actor.person if actor else None, **facts)
    return new_due


class HoldActions:
    """Holds (mixed into ``Engine``, which provides ``transaction``, ``site``, ``clock``, ``overseers``,
    ``_human_step`` and ``launcher``)."""

    transaction: Any
    site: Any
    clock: Any
    overseers: Any
    _human_step: Any

    def _check_may_hold(self, change: Any, step: HumanStep, actor: Actor, what: str) -> None:
        """InputRefused unless ``actor`` holds the step, oversees it, or is an operator."""
        if actor.person not in self.site.people:
            raise InputRefused([str(UnknownPerson(actor.person, self.site))])
        view = change.view
        holder = view.steps[step.id].get("claimed_by") or change.rota.person_for(step.assignee)
        operators = set().union(*(human.members(self.site, n) for n in self.site.settings.web.operators))
        allowed = {holder} | self.overseers(view, step) | operators
        if actor.person not in allowed and not (actor.by and actor.by in operators):
            raise InputRefused([f"{actor.person} may not {what} step `{step.id}`: only whoever holds it "
                                f"({holder}), the lead of {step.assignee}, the run's owner or an operator may"])

    def hold(self, run_id: str, step_id: str, actor: Actor | str, reason: str, note: str = "", *,
             link: Claim | None = None) -> datetime:
        """Put an active human step on hold for ``reason`` (one of its ``waiting_for``): its clock stops.

        Returns the instant the hold ends and escalates unless released first. Refused
        (InputRefused / StepNotActive) without changing anything: an undeclared reason, a step
        already on hold, a person who may not.
        """
        actor = as_actor(actor)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            step = self._human_step(view, step_id)
            reasons = hold_reasons(view.sop, step)
            if not reasons:
                raise InputRefused([f"step `{step.id}` cannot be put on hold: neither it nor {view.sop.id} declares "
                                    "`waiting_for` (the reasons a hold may have)"])
            if reason not in reasons:
                raise InputRefused([f"`{reason}` is not a reason to hold `{step.id}`: it may wait for "
                                    f"{', '.join(reasons)}"])
            self._check_may_hold(change, step, actor, "put on hold")
            held = t.store.open_hold(view.id, step.id)
            if held is not None:
                raise StepNotActive(f"step `{step.id}` is on hold already (waiting for {held.reason}, "
                                    f"since {held.held_at:%Y-%m-%d %H:%M} UTC)")
            now = self.clock.now()
            if link is not None:
                t.store.use_link(link, action="hold", now=now)
            number = t.store.holds_of(view.id, step.id) + 1
            limit = max_hold(view.sop, step)
            max_at = change.after(now, limit, step)
            stopped = t.store.stop_step_timers(view, step.id, now)
            t.store.start_hold(run_id=view.id, step_id=step.id, number=number, reason=reason, note=note or None,
                               held_by=actor.person, held_via=actor.via, held_at=now, max_at=max_at,
                               timers=json.dumps(stopped))
            change.update_step(step.id, held_at=now)
            change.arm(step.id, TimerKind.HOLD, f"hold{number}", max_at)
            change.record(RecordKind.STEP_HELD, step.id, actor=actor.person, number=number, reason=reason,
                          note=note or None, max_at=max_at, max_hold=format_duration(limit),
                          due_at=view.steps[step.id].get("due_at"), **actor.facts())
        log.info("event=step_held run=%s step=%s actor=%s reason=%s max_at=%s", view.id, step.id,
                 actor.described(), reason, max_at.isoformat())
        return max_at

    def release(self, run_id: str, step_id: str, actor: Actor | str, note: str = "", *,
                link: Claim | None = None) -> datetime | None:
        """End a step's hold: its clock runs again, its due instant moved by the time held (returned)."""
        actor = as_actor(actor)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            step = self._human_step(view, step_id)
            held = t.store.open_hold(view.id, step.id)
            if held is None:
                raise StepNotActive(f"step `{step.id}` is not on hold")
            self._check_may_hold(change, step, actor, "release")
            if link is not None:
                t.store.use_link(link, action="release", now=self.clock.now())
            due = end_hold(change, step, held, "released", actor, note)
        log.info("event=step_released run=%s step=%s actor=%s due_at=%s", view.id, step.id, actor.described(),
                 due.isoformat() if due else "-")
        return due


def hold_expired(change: Any, step: HumanStep, level: str, late_ms: int, late: bool) -> bool:
    """The hold timer ``hold<n>`` fires: if that hold is still on, it ends and escalates. True when it acted."""
    held = change.store.open_hold(change.view.id, step.id)
    if held is None or f"hold{held.number}" != level.split(":", 1)[-1]:
        return False  # released meanwhile (fenced: the timer was cancelled, or it is another hold's)
    end_hold(change, step, held, "expired")
    limit = max_hold(change.view.sop, step)
    change.page("escalated", step.id, HOLD_ESCALATES_TO,
                level={"key": f"hold{held.number}", "message": "escalated", "late_ms": late_ms,
                       "hold_reason": held.reason, "max_hold": format_duration(limit), "held_by": held.held_by})
    log.info("event=hold_expired run=%s step=%s reason=%s late=%s", change.view.id, step.id, held.reason, late)
    return True
