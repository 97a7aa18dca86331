"""What people do on a run's steps: report, take, hand over, ask for help; status updates and snoozes.

A part of :class:`flows.engine.transitions.Engine` (it inherits these), kept apart because it is
the people's side of the engine: each action names a proven person (an ``Actor``), is checked
against who may act on the step, and is recorded with how it came. Refusals change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from flows.clock import scaled
from flows.engine.change import RunChange, Transaction
from flows.engine.hold_pages import paused
from flows.engine.inputs import InputRefused, StepNotActive
from flows.engine.links import Claim
from flows.engine.oncall import Rota, answering
from flows.engine.store import RunStore
from flows.engine.view import RunView
from flows.language.actors import Actor, UnknownPerson, as_actor, check_person
from flows.language.cadence import cadence_targets, effective_cadence
from flows.language.durations import format_duration
from flows.language.fields import length_problem
from flows.language.steps import human
from flows.language.steps.human import HumanStep
from flows.ledger.tx import Tx
from flows.ledger.vocabulary import RecordKind, StepState, TimerKind

log = logging.getLogger("sop.engine")


#: how a person reports for themselves (the terminal, a signed-in page, a personal link): only someone who may act
#: on the step may (``human.may_act``); an operator's token acting for someone (``by``) may act for anyone
SELF_SERVED = ("cli", "web", "link")
#: a second "Need help" on a step sooner than this after the first (wall time: a person's double tap or second
#: press) is refused: each would climb one more rung of the ladder and page people further up within seconds
HELP_AGAIN_AFTER = timedelta(minutes=1)


class UpdateRefused(InputRefused):
    """A status update refused: ``what`` is ``text`` (its words: none, too long) or ``actor`` (who may not post one)."""

    def __init__(self, problems: list[str], what: str):
        super().__init__(problems)
        self.what = what


class StepHeld(StepNotActive):
    """The step is held by someone else (they said "I'll take it")."""

    def __init__(self, holder: str, message: str):
        super().__init__(message)
        self.holder = holder


class PeopleActions:
    """The people's side of the engine (mixed into ``Engine``, which provides ``transaction``, ``site``,
    ``clock``, ``ledger``, ``launcher``, ``advance``, ``person_for`` and, from the holds, ``_operator``)."""

    transaction: Any
    site: Any
    clock: Any
    ledger: Any
    launcher: Any
    advance: Any
    person_for: Any
    _operator: Any

    # --- reports from people ---------------------------------------------------------------

    def run_people(self, view: RunView) -> set[str]:
        """Everyone a run is about: its owner role and that role's lead, and whoever may act on one of its steps."""
        role = self.site.roles.get(view.sop.owner)
        people = human.members(self.site, view.sop.owner) | human.members(self.site, role.lead if role else None)
        for step in view.sop.steps:
            if isinstance(step, HumanStep):
                people |= human.may_act(step, self.site, "", owner=view.sop.owner, ladder=view.sop.ladder_for(step))
        return people

    def overseers(self, view: RunView, step: HumanStep) -> set[str]:
        """Who may still act on a step another member took: its role's lead chain (its lead, that role's lead, … up
        to the top: ``human.lead_chain``) and the run's owner (their people)."""
        return human.lead_chain(self.site, step.assignee) | human.members(self.site, view.sop.owner)

    def hand_over_targets(self, view: RunView, step: HumanStep, actor: Actor | str,
                          holder: str | None = None) -> set[str]:
        """Whom ``actor`` may hand the step to; empty: they may not hand it over. The one rule of who hands over,
        which the step's page offers and :meth:`hand_over` checks.

        Whoever holds it (who took it, else the person it went to) may give it to another member of its role; its
        role's lead chain, the run's owner and the operators (``settings.web.operators``, as for holds) to any
        person. ``holder``: who holds it now, when the caller knows (else who took it, else who is on call).
        """
        actor = as_actor(actor)
        if actor.person not in self.site.people:
            return set()
        holder = holder or view.steps[step.id].get("claimed_by") or self.person_for(step.assignee)
        if actor.person in self.overseers(view, step) or self._operator(actor):
            targets = set(self.site.people) - {holder}
            if not self._may_act(view, step, actor):  # an operator does not hand a step to themselves to report it
                targets.discard(actor.person)
            return targets
        if actor.person == holder:
            return human.members(self.site, step.assignee) - {holder}
        return set()

    def report(self, run_id: str, step_id: str, report: human.HumanReport, *, nudge: bool = True,
               link: Claim | None = None) -> str:
        """Take a person's report on a human step; returns the step's new state.

        Refuses (ReportRefused / StepNotActive / RunNotFound) without changing anything when
        the run, the step, the person or the form values are wrong. ``link``: the personal link
        it came through, used up in the same transaction (LinkRefused when it already was).
        """
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            run_id = view.id
            step = self._human_step(view, step_id)
            if isinstance(report.values, dict):
                report.values = human.coerce_values(step, report.values)
            approvals = view.approvals(step.id)
            human.check_report(step, report, initiator=view.run["initiator"], approvals=approvals, site=self.site)
            actor = report.actor
            if actor.via in SELF_SERVED and not actor.by:  # a person for themselves: as on the step's page
                self.check_may_act(view, step, actor)
            holder = view.steps[step.id].get("claimed_by")
            if holder and actor.person != holder and not actor.by and actor.person not in self.overseers(view, step):
                raise StepHeld(holder, f"step `{step.id}` is taken by {holder}: only they, the lead of "
                                       f"{step.assignee} or the run's owner may report it (or hand it over)")
            if link is not None:
                t.store.use_link(link, action=report.outcome, now=self.clock.now())
            result = {**human.complete_values(step, report.values), "evidence": report.evidence}
            if step.approval is not None and report.outcome == "done":
                approvals = [*approvals, actor.person]
                t.store.set_approvals(run_id, step.id, approvals)
                change.record(RecordKind.APPROVAL, step.id, actor=actor.person, note=report.note,
                              approvals=approvals, needed=step.approval.count, **actor.facts())
                result["approvers"] = approvals
                if len(approvals) < step.approval.count:
                    return StepState.ACTIVE
            state = StepState.DONE if report.outcome == "done" else StepState.REJECTED
            paged = t.store.paged_about(run_id, step.id)
            change.set_step(step.id, state, result=result, actor=actor.person, note=report.note, facts=actor.facts())
            if paged:  # the owner, and everyone its escalations and help paged about it, stop chasing it
                change.page("step_done", step.id, [view.sop.owner, *(p for p in paged if p != "assignee")])
            if state == StepState.REJECTED and step.on_reject:
                round_ = change.rework(step, by=actor.person, note=report.note)
                if round_ is not None:
                    log.info("event=rework run=%s step=%s back_to=%s round=%d", run_id, step_id, step.on_reject,
                             round_)
        log.info("event=step_reported run=%s step=%s actor=%s outcome=%s", run_id, step_id, actor.described(), state)
        self.advance(run_id)
        if nudge and self.launcher is not None:
            self.launcher.nudge_soon(run_id)  # the answer does not wait on Prefect
        return state

    @contextmanager
    def _on_step(self, run_id: str, step_id: str, actor: Actor) -> Iterator[tuple[Transaction, RunChange, HumanStep]]:
        """A transaction on an active human step that ``actor`` may act on; refused (nothing written) otherwise."""
        with self.transaction() as t:
            change = t.change(run_id)
            step = self._human_step(change.view, step_id)
            self.check_may_act(change.view, step, actor)
            yield t, change, step

    def _may_act(self, view: RunView, step: HumanStep, actor: Actor) -> bool:
        try:
            self.check_may_act(view, step, actor)
        except human.ReportRefused:
            return False
        return True

    def check_may_act(self, view: RunView, step: HumanStep, actor: Actor) -> None:
        """ReportRefused unless the person may act on the step (``human.may_act``, or they hold it: a step handed
        over goes to whoever its lead or owner chose)."""
        person = check_person(self.site, actor.person) if actor.person in self.site.people else None
        if person is None:
            raise human.ReportRefused([str(UnknownPerson(actor.person, self.site))])
        allowed = human.may_act(step, self.site, person, owner=view.sop.owner, ladder=view.sop.ladder_for(step))
        holder = view.steps[step.id].get("claimed_by")
        if holder:
            allowed |= {holder}
        if person not in allowed:
            raise human.ReportRefused([f"{person} may not act on step `{step.id}`: it is for "
                                       f"{step.assignee} ({', '.join(sorted(allowed)) or 'nobody'})"])

    def claim(self, run_id: str, step_id: str, actor: Actor | str, *, link: Claim | None = None) -> str:
        """"I'll take it": the person holds the step; the other members of its role are told. Returns the holder.

        Claiming a step one already holds changes nothing; a step another person holds is refused
        (StepNotActive) and names them.
        """
        actor = as_actor(actor)
        with self._on_step(run_id, step_id, actor) as (t, change, step):
            view = change.view
            holder = view.steps[step.id].get("claimed_by")
            if holder == actor.person:
                if link is not None:
                    t.store.use_link(link, action="claim", now=self.clock.now())
                return holder
            if holder:
                raise StepHeld(holder, f"step `{step.id}` is already taken by {holder}")
            now = self.clock.now()
            if link is not None:
                t.store.use_link(link, action="claim", now=now)
            t.store.claim_step(view, step.id, actor.person, now)
            change.record(RecordKind.STEP_CLAIMED, step.id, actor=actor.person, **actor.facts())
            others = sorted(human.members(self.site, step.assignee) - {actor.person})
            if others:
                change.page("step_claimed", step.id, others)
        log.info("event=step_claimed run=%s step=%s actor=%s", view.id, step_id, actor.described())
        return actor.person

    def hand_over(self, run_id: str, step_id: str, actor: Actor | str, to: str, note: str = "", *,
                  link: Claim | None = None) -> str:
        """Give an active step to another person, who is paged with the note; returns the new holder. Who had it
        (when someone else gave it away) is told it is not theirs any more (``handed_away``).

        Who may, and to whom: :meth:`hand_over_targets`. Refused (ReportRefused) otherwise, and for
        someone who is not a person; nothing is written then.
        """
        actor = as_actor(actor)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            step = self._human_step(view, step_id)
            holder = change.person_holding(step)
            problems = self._hand_over_problems(view, step, actor, holder, to)
            if problems:
                raise human.ReportRefused(problems)
            now = self.clock.now()
            if link is not None:
                t.store.use_link(link, action="hand-over", now=now)
            t.store.claim_step(view, step.id, to, now)
            above = actor.person in self.overseers(view, step) or self._operator(actor)
            # the new holder gets one rung before the ladder pages again, when someone above the step handed it on
            # (teammates passing it back and forth do not hold the ladder off)
            grace = change.ladder_grace(step, now) if above else None
            moved = {"ladder_from": grace[0], "ladder_to": grace[1]} if grace else {}
            change.record(RecordKind.STEP_HANDED_OVER, step.id, actor=actor.person, to=to, holder=holder,
                          note=note, **moved, **actor.facts())
            change.page("handed_over", step.id, [to],
                        level={"key": "handover", "message": "handed_over", "by": actor.person, "note": note,
                               **paused(change, step.id)})  # on hold: its new holder reads that its clock is stopped
            if holder and holder != actor.person:  # who had it is told it is not theirs any more (not who gave it)
                change.page("handed_away", step.id, [holder],
                            level={"key": "handover", "message": "handed_away", "by": actor.person})
        log.info("event=step_handed_over run=%s step=%s actor=%s to=%s", view.id, step_id, actor.described(), to)
        return to

    def _hand_over_problems(self, view: RunView, step: HumanStep, actor: Actor, holder: str, to: str) -> list[str]:
        """Why ``actor`` may not hand the step to ``to`` (empty: they may), in words they can act on."""
        if actor.person not in self.site.people:
            return [str(UnknownPerson(actor.person, self.site))]
        if to not in self.site.people:
            return [str(UnknownPerson(to, self.site, "hand over to"))]
        if to == holder:
            return [f"{to} holds `{step.id}` already"]
        targets = self.hand_over_targets(view, step, actor, holder)
        if not targets:
            return [f"{actor.person} does not hold `{step.id}` ({holder} does): only its holder, a lead above "
                    f"{step.assignee} (its lead, that role's lead, …), the run's owner or an operator may hand it over"]
        if to not in targets:
            team = human.members(self.site, step.assignee)
            return [f"{to} is not a member of {step.assignee} ({', '.join(sorted(team))}); its lead may hand it to "
                    "anyone"]
        return []

    def ask_for_help(self, run_id: str, step_id: str, actor: Actor | str, note: str = "", *,
                     link: Claim | None = None) -> list[str]:
        """"Need help": the step escalates to its next level now (one that reaches beyond the assignee),
        or to the assignee role's lead when its ladder has none left. Returns who is paged: each target as
        written, with whom it reaches now (``lead (chen-jie)``)."""
        actor = as_actor(actor)
        with self._on_step(run_id, step_id, actor) as (t, change, step):
            view = change.view
            now = self.clock.now()
            asked = t.store.last_record_at(view.id, RecordKind.HELP_ASKED, step.id)
            if asked is not None and now - asked < HELP_AGAIN_AFTER:  # a double tap, a second press: not a rung more
                raise human.ReportRefused([f"help on `{step.id}` was asked {int((now - asked).total_seconds())}s ago and its "
                                           "people were paged; give them a moment (asking again within "
                                           f"{format_duration(HELP_AGAIN_AFTER)} climbs no further)"])
            if link is not None:
                t.store.use_link(link, action="help", now=now)
            armed, wanted = _next_help(change, step)
            change.record(RecordKind.HELP_ASKED, step.id, actor=actor.person, note=note,
                          level=wanted[0].key if wanted else None, **actor.facts())
            if wanted:
                level = wanted[0]
                if armed is not None:  # the level armed now fires as this help, or is passed over for it
                    t.store.claim_timer(armed.id, now, f"help:{actor.person}")
                notify = change.escalate(step, level.key, due_at=now, late_ms=0, late=False,
                                         asked_by=actor.person) or []
            else:
                notify = ["lead"]
                change.page("escalated", step.id, notify,
                            level={"key": "help", "message": "escalated", "late_ms": 0, "asked_by": actor.person})
            reached = change.reached(notify, step.id, without=actor.person)
        log.info("event=help_asked run=%s step=%s actor=%s notify=%s", view.id, step_id, actor.described(),
                 ",".join(notify))
        return reached

    def help_would_page(self, view: RunView, step: HumanStep, person: str) -> list[tuple[str, str | None]]:
        """Whom "Need help" on the step, asked by ``person``, would page now, each with the role they answer for
        (None: named in person): read, nothing written, so its page can name them before she presses. The level
        :meth:`ask_for_help` would fire (:func:`_next_help`), else its role's lead; empty when unresolved."""
        with self.ledger.read() as conn:  # a change over a read: it decides whom, and records and pages nothing
            change = RunChange(RunStore(Tx(conn=conn, clock=self.clock)), view, self.site, [])
            _, wanted = _next_help(change, step)
            targets = list(wanted[0].notify) if wanted else ["lead"]
            roles = answering(targets, view.sop, step, self.site, change.rota, change.holder(step.id))
            return [(p, roles.get(p)) for p in change.people_paged(targets, step.id, person)]

    def roles_paged(self, view: RunView, step: HumanStep, targets: list[str], at: datetime) -> dict[str, str]:
        """Whom a ladder level to ``targets`` that fired ``at`` reached through a role, with that role
        (:func:`~flows.engine.oncall.answering`, on call as at that instant): its step's page names them as it
        names the others."""
        with self.ledger.read() as conn:
            return answering(targets, view.sop, step, self.site, Rota(self.site, conn, at),
                             view.steps[step.id].get("claimed_by"))

    # --- status cadences ------------------------------------------------------------------

    def post_update(self, run_id: str, actor: Actor | str, text: str) -> int:
        """A status update on an open run, by a person of config; returns its record's seq.

        Its people may post one: the owner role and its lead, and whoever may act on one of its steps
        (``human.may_act``); an operator acting for one of them (``by``) too. It keeps the run's
        status cadence (the next ask still comes; a missed-update check finds it).
        """
        actor = as_actor(actor)
        text = text.strip()
        if not text:
            raise UpdateRefused(["a status update needs some text: what is happening now?"], "text")
        if (problem := length_problem(text, "a status update")) is not None:  # it was cut at 4,000, silently
            raise UpdateRefused([problem], "text")
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            if not view.is_open:
                raise StepNotActive(f"run {view.id} is {view.run['status']}: it takes no status updates")
            if actor.person not in self.site.people:
                raise UpdateRefused([str(UnknownPerson(actor.person, self.site))], "actor")
            if actor.person not in self.run_people(view):
                raise UpdateRefused([f"{actor.person} is not one of this run's people (its owner {view.sop.owner}, "
                                     "their lead, or someone a step of it is for)"], "actor")
            # (asks stopped after missed updates in a row start again with it: flows.engine.timers)
            seq = change.record(RecordKind.STATUS_UPDATE, actor=actor.person, text=text, **actor.facts())
            cadence = effective_cadence(view.sop, self.site)
            shared = cadence_targets(view.sop.owner, cadence.shared_with, self.site) if cadence is not None else []
            if shared:
                change.page("status_update", None, shared,
                            level={"key": "update", "message": "status_update", "text": text, "by": actor.person,
                                   "every": format_duration(cadence.every) if cadence is not None else None})
        log.info("event=status_update run=%s actor=%s", view.id, actor.described())
        return seq

    def snooze(self, run_id: str, actor: Actor | str, by: timedelta, reason: str) -> datetime:
        """Push the run's next status ask (and a pending missed-update check) by ``by`` of SOP time.

        Bounded by the cadence's ``max_snooze``; the owner role's people (or its lead) only; a
        reason is required. Returns the new instant of the next ask.
        """
        actor = as_actor(actor)
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            cadence = effective_cadence(view.sop, self.site)
            problems = []
            if cadence is None:
                problems.append(f"run {view.id} ({view.sop.id}) has no status cadence to snooze")
            elif not timedelta(0) < by <= cadence.snooze_limit:
                problems.append(f"a snooze is up to {format_duration(cadence.snooze_limit)}, "
                                f"not {format_duration(by)}")
            if not reason.strip():
                problems.append("a snooze needs a reason")
            owners = human.members(self.site, view.sop.owner)
            role = self.site.roles.get(view.sop.owner)
            owners |= human.members(self.site, role.lead if role else None)
            if actor.person not in owners:
                problems.append(f"{actor.person} is not of {view.sop.owner} (the run's owner) or its lead")
            if problems:
                raise InputRefused(problems)
            if not view.is_open:
                raise StepNotActive(f"run {view.id} is {view.run['status']}")
            until = t.store.postpone_run_timers(view, (TimerKind.CADENCE, TimerKind.CADENCE_CHECK),
                                                scaled(by, view.speed))
            change.record(RecordKind.CADENCE_SNOOZED, actor=actor.person, by_s=by.total_seconds(), reason=reason,
                          until=until, **actor.facts())
        log.info("event=cadence_snoozed run=%s actor=%s until=%s", view.id, actor.described(), until)
        return until  # type: ignore[return-value]

    def link_used(self, nonce: str) -> str | None:
        """What a personal link was used for (None: not yet)."""
        with self.ledger.read() as conn:
            return RunStore.link_used(conn, nonce)

    def _human_step(self, view: RunView, step_id: str) -> HumanStep:
        try:
            step = view.sop.step(step_id)
        except KeyError:
            raise StepNotActive(f"run {view.id} ({view.run['sop_id']}) has no step `{step_id}` "
                                f"(steps: {', '.join(s.id for s in view.sop.steps)})") from None
        if not isinstance(step, HumanStep):
            raise StepNotActive(f"step `{step_id}` is automated ({step.kind}); nobody reports on it")  # type: ignore[attr-defined]
        if not view.is_open:
            raise StepNotActive(f"run {view.id} is {view.run['status']} ({view.run['outcome'] or 'no outcome'}); it takes no reports")
        state = view.state(step_id)
        if state != StepState.ACTIVE:
            waiting = [s for s, r in view.steps.items() if r["state"] == StepState.ACTIVE
                       and isinstance(view.sop.step(s), HumanStep)]
            raise StepNotActive(f"step `{step_id}` is {state}, not waiting for a report "
                                f"(waiting now: {', '.join(waiting) or 'none'})")
        return step


def _next_help(change: RunChange, step: HumanStep) -> tuple[Any, list[Any]]:
    """What a "Need help" on the step fires now: its armed ladder level (the timer row; None: none armed) and the
    levels from it on that reach beyond the assignee (the first is paged; none: its role's lead is)."""
    armed = change.store.armed_ladder(change.id, step.id)
    return armed, change.help_levels(step, armed.level if armed is not None else None)
