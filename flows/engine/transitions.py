"""The engine: the state machine of a run, kept in the ledger.

Every transition (start, a step becoming ready, a report, a timer, a cancel) is one ledger
transaction, so any process — the CLI, the API, a flow run, the timer service — can make
it, and the database decides races. The engine decides *what* happens (this module, and
the moves of :mod:`flows.engine.change`); the run store (:mod:`flows.engine.store`) holds
every statement; Prefect executes the automated steps (see ``flows.prefect``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from flows.clock import Clock, SystemClock, scaled
from flows.engine.change import Page, Plan, RunChange, Transaction
from flows.engine.inputs import InputRefused, StepNotActive, check_inputs, new_run_id
from flows.engine.links import Claim, LinkRefused, Links
from flows.engine.oncall import on_call_now
from flows.engine.secrets import site_secret
from flows.engine.store import RunStore
from flows.engine.view import RunNotFound, RunView
from flows.language.actors import Actor, UnknownPerson, as_actor, check_person
from flows.language.cadence import effective_cadence
from flows.language.durations import check_speed, format_duration
from flows.language.expressions import render
from flows.language.library import Library, LoadedSop
from flows.language.oncall import OnCall
from flows.language.spec import Sop
from flows.language.steps import human
from flows.language.steps.human import HumanStep
from flows.ledger import Ledger, dumps
from flows.ledger.vocabulary import TERMINAL_STEP, RecordKind, RunStatus, StepState, TimerKind
from flows.logfmt import kv

log = logging.getLogger("sop.engine")


class StepHeld(StepNotActive):
    """The step is held by someone else (they said "I'll take it")."""

    def __init__(self, holder: str, message: str):
        super().__init__(message)
        self.holder = holder


@dataclass
class StartResult:
    run_id: str
    attached: bool = False
    repeats: int = 0


#: the longest dedup key a run keeps (``runs.dedup_key``); a longer one is shortened, keeping it unique
DEDUP_KEY_CHARS = 300


def _fitting(key: str) -> str:
    """A dedup key that fits its column: a longer key (a label of 400 characters) keeps its start and a hash
    of the whole, so equal keys still meet and different ones still differ (PostgreSQL refuses to cut it)."""
    if len(key) <= DEDUP_KEY_CHARS:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{key[:DEDUP_KEY_CHARS - 18]}…#{digest}"


def _copies(copies: int) -> dict[str, int]:
    """The ``copies`` of a ``trigger_repeated`` record: written only when one record stands for several."""
    return {"copies": copies} if copies > 1 else {}


class Engine:
    """Transitions of runs; pages go through ``pager``, flow runs through ``launcher``."""

    def __init__(self, library: Library, ledger: Ledger, pager: Any = None, launcher: Any = None,
                 clock: Clock | None = None):
        self.library = library
        self.ledger = ledger
        self.pager = pager
        self.launcher = launcher
        self.clock = clock or ledger.clock or SystemClock()
        #: hashes of pinned SOP texts known to be in the ledger (committed): no need to look again
        self._pinned_texts: set[str] = set()
        self._links: Links | None = None

    @property
    def links(self) -> Links:
        """The site's personal links, signed with its secret (``flows.engine.secrets``), on this engine's clock."""
        if self._links is None:
            web = self.site.settings.web
            self._links = Links(site_secret(self.library.root), self.clock, self.site.settings.base_url,
                                max_age=web.link_max_age, sign_in_ttl=web.sign_in_ttl)
        return self._links

    @property
    def site(self):  # noqa: ANN201 - Site
        return self.library.site

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One serialised write transaction over the run store; the pages its changes decide are
        queued in its outbox inside it and sent once it commits. An error writes nothing."""
        with self.ledger.transaction() as tx, RunStore(tx) as store:
            done = Transaction(store, self.site)
            yield done
            if self.pager is not None and done.pages:
                self.pager.queue(store.conn, done.pages)
        if self.pager is not None and done.pages:
            pages = done.pages
            self.ledger.after_commit(lambda: self.pager.send_all(self, pages))  # type: ignore[union-attr]

    # --- start ------------------------------------------------------------------------

    def start(self, sop_id: str, inputs: dict[str, Any] | None = None, *, initiator: Actor | str | None = None,
              trigger: dict[str, Any] | None = None, speed: float | None = None,
              flow_run_id: str | None = None, launch: bool = True, copies: int = 1) -> StartResult:
        """Start a run (or attach to the open run with the same dedup key).

        ``initiator``: the person who starts it, as an :class:`Actor` (how it came is recorded
        with it), or the name of what started it (``alertmanager``, ``drill``, a scheduler).

        ``copies``: the signal arrived that many times at once (one payload): it starts or attaches
        once, and the copies past the one that starts count as repeats in one ``trigger_repeated`` record.

        Records the run with its pinned SOP text, pages the owner at once, assigns the
        first human steps, then asks the launcher for a Prefect flow run (when that fails, the
        failure is logged and `sop serve` launches the run later: the run is recorded and paged).
        """
        loaded = self.library.get(sop_id)
        sop = loaded.sop
        typed = check_inputs(sop, inputs or {})
        speed = float(self.site.settings.speed or 1.0) if speed is None else speed
        if (problem := check_speed(speed)) is not None:
            raise InputRefused([problem])
        speed = float(speed)
        key = self._dedup_key(sop, typed, trigger)
        for _attempt in range(3):
            try:
                result, plan, _view = self._insert_run(loaded, typed, key, initiator, trigger, speed, flow_run_id,
                                                       copies)
                break
            except IntegrityError:
                continue  # another process opened the same key a moment ago: attach to it
        else:  # pragma: no cover - three races in a row
            raise RuntimeError(f"could not start or attach a run of {sop_id} for key {key!r}")
        if result.attached:
            return result
        if launch and self.launcher is not None and flow_run_id is None and not plan.finished:
            self.ledger.after_commit(lambda: self._launch(result.run_id))  # in a batch: once it commits
        return result

    def _launch(self, run_id: str) -> None:
        try:
            self.launcher.launch(run_id)  # type: ignore[union-attr]
        except Exception as exc:  # recorded and paged already: `sop serve` launches orphans
            log.warning(kv("event=launch_failed", run=run_id, error=" ".join(str(exc).split())[:300],
                           then="sop serve retries it"))

    def open_run(self, sop_id: str, inputs: dict[str, Any] | None = None,
                 trigger: dict[str, Any] | None = None) -> str | None:
        """The open run that ``start`` with these inputs would attach to (same SOP, same dedup key), or None."""
        sop = self.library.get(sop_id).sop
        key = self._dedup_key(sop, check_inputs(sop, inputs or {}), trigger)
        if key is None:
            return None
        with self.ledger.read() as conn:
            return RunStore.open_run_of(conn, f"{sop.id}:{key}")

    def _dedup_key(self, sop: Sop, inputs: dict[str, Any], trigger: dict[str, Any] | None) -> str | None:
        if not sop.dedup:
            return None
        config = {k: v for k, v in self.site.vars.items()}
        key = render(sop.dedup, {"inputs": inputs, "trigger": trigger or {}, "config": config}).strip() or None
        return _fitting(key) if key else None

    def _insert_run(self, loaded: LoadedSop, inputs: dict[str, Any], key: str | None,
                    starter: Actor | str | None, trigger: dict[str, Any] | None, speed: float,
                    flow_run_id: str | None, copies: int = 1) -> tuple[StartResult, Plan, RunView | None]:
        """Insert the run and make its first steps ready (or attach to the open one), in one transaction.

        Returns the new run's view as the transaction left it (None when attached).
        """
        sop = loaded.sop
        initiator, facts = (starter.person, starter.facts()) if isinstance(starter, Actor) else (starter, {})
        with self.transaction() as t:
            store = t.store
            # the run's start, once the write lock is held (waiting for it is not part of the run): its
            # deadline counts from it and its run_started record carries it, so an audit of a drill
            # compressed 120× reads a 2h deadline as 2h, not the 1h59m59s of a few milliseconds' wait
            now = self.clock.now()
            if key is not None:
                found = store.open_run(f"{sop.id}:{key}")
                if found is not None:
                    open_id, repeats = found[0], found[1] + copies
                    store.count_repeat(open_id, repeats, now)
                    store.record(RecordKind.TRIGGER_REPEATED, open_id, actor=initiator, trigger=trigger,
                                 repeats=repeats, **_copies(copies), **facts)
                    return StartResult(open_id, attached=True, repeats=repeats), Plan(), None
            text_hash = loaded.text_hash
            pinned = text_hash in self._pinned_texts
            if not pinned and not store.is_pinned(text_hash):
                store.pin(text_hash, sop.id, sop.version, loaded.text, now)
            run_id = new_run_id()
            deadline_at = now + scaled(sop.deadline, speed) if sop.deadline else None
            run = dict(
                id=run_id, sop_id=sop.id, sop_hash=text_hash, title=sop.title, sop_class=sop.class_,
                priority=sop.priority, status=RunStatus.RUNNING, initiator=initiator,
                trigger=dumps(trigger) if trigger else None, inputs=dumps(inputs), dedup_key=key,
                open_key=f"{sop.id}:{key}" if key else None, repeats=copies - 1, last_seen_at=now, speed=speed,
                started_at=now, deadline_at=deadline_at, flow_run_id=flow_run_id)
            fallbacks = {s.fallback for s in sop.steps if s.fallback}
            view = store.new_run(run, [
                {"run_id": run_id, "step_id": s.id, "kind": s.kind,  # type: ignore[attr-defined]
                 "state": StepState.STANDBY if s.id in fallbacks else StepState.PENDING,
                 "assignee": getattr(s, "assignee", None), "round": 1} for s in sop.steps], sop)
            change = t.change(view)
            change.record(RecordKind.RUN_STARTED, actor=initiator, at=now, sop=sop.id, sop_hash=text_hash,
                          version=sop.version, inputs=inputs, trigger=trigger, speed=speed, dedup_key=key,
                          deadline_at=deadline_at, priority=sop.priority, **facts)
            if deadline_at is not None:
                change.arm("", TimerKind.RUN_DEADLINE, "", deadline_at)
            cadence = effective_cadence(sop, self.site)
            if cadence is not None:  # the first ask for a status update, one period from now
                change.arm("", TimerKind.CADENCE, "1", now + scaled(cadence.every, speed))
            change.page("run_started", None, [sop.owner])
            if copies > 1:  # the other copies of the signal that started it, in one record
                change.record(RecordKind.TRIGGER_REPEATED, actor=initiator, trigger=trigger, repeats=copies - 1,
                              **_copies(copies - 1))
            plan = change.advance()
        if not pinned:
            self.ledger.after_commit(lambda: self._pinned_texts.add(text_hash))
        log.info("event=run_started run=%s sop=%s speed=%g initiator=%s", run_id, sop.id, speed, initiator)
        return StartResult(run_id, repeats=copies - 1), plan, view

    # --- advancing ---------------------------------------------------------------------

    def advance(self, run_id: str) -> Plan:
        """Make every step whose needs are met ready (or skipped); finish the run when all are.

        Idempotent: any process may call it any time. Human steps are assigned and paged
        here, so the next person hears at once, without waiting for a flow run to start.
        """
        with self.transaction() as t:
            return t.change(run_id).advance()

    def on_call(self, role: str, at: datetime | None = None) -> OnCall:
        """Who is primary and backup of ``role`` at ``at`` (default: now on the engine's clock), and why:
        its rotation or fixed people, an override winning (KeyError: not a role)."""
        return on_call_now(self.site, self.ledger, role, at or self.clock.now())

    def person_for(self, name: str, at: datetime | None = None) -> str:
        """The person who answers for a role (its primary now, or at ``at``) or the person named."""
        return self.on_call(name, at).primary if name in self.site.roles else name

    # --- reports from people ---------------------------------------------------------------

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
            escalated = t.store.ladder_levels_fired(run_id, step.id)
            change.set_step(step.id, state, result=result, actor=actor.person, note=report.note, facts=actor.facts())
            if escalated:
                change.page("step_done", step.id, [view.sop.owner])
            if state == StepState.REJECTED and step.on_reject:
                round_ = change.rework(step, by=actor.person, note=report.note)
                if round_ is not None:
                    log.info("event=rework run=%s step=%s back_to=%s round=%d", run_id, step_id, step.on_reject,
                             round_)
        log.info("event=step_reported run=%s step=%s actor=%s outcome=%s", run_id, step_id, actor.described(), state)
        self.advance(run_id)
        if nudge and self.launcher is not None:
            self.launcher.nudge(run_id)
        return state

    @contextmanager
    def _on_step(self, run_id: str, step_id: str, actor: Actor) -> Iterator[tuple[Transaction, RunChange, HumanStep]]:
        """A transaction on an active human step that ``actor`` may act on; refused (nothing written) otherwise."""
        with self.transaction() as t:
            change = t.change(run_id)
            step = self._human_step(change.view, step_id)
            self.check_may_act(change.view, step, actor)
            yield t, change, step

    def check_may_act(self, view: RunView, step: HumanStep, actor: Actor) -> None:
        """ReportRefused unless the person may act on the step from its page (``human.may_act``)."""
        person = check_person(self.site, actor.person) if actor.person in self.site.people else None
        if person is None:
            raise human.ReportRefused([str(UnknownPerson(actor.person, self.site))])
        allowed = human.may_act(step, self.site, person, owner=view.sop.owner)
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
        """Give an active step to another person, who is paged with the note; returns the new holder.

        Who may: whoever holds it (who took it, else the person it went to) to another member of
        its role; the role's lead or the run's owner to any person of config. Refused
        (ReportRefused) otherwise, and for someone who is not a person.
        """
        actor = as_actor(actor)
        with self._on_step(run_id, step_id, actor) as (t, change, step):
            view = change.view
            row = view.steps[step.id]
            holder = row.get("claimed_by") or change.rota.person_for(step.assignee)
            role = self.site.roles.get(step.assignee)
            overseers = human.members(self.site, role.lead if role else None) | human.members(self.site, view.sop.owner)
            team = human.members(self.site, step.assignee)
            problems = []
            if to not in self.site.people:
                problems.append(str(UnknownPerson(to, self.site, "hand over to")))
            elif to == holder:
                problems.append(f"{to} holds `{step.id}` already")
            elif actor.person in overseers:
                pass  # a lead (or the owner) may name anyone
            elif actor.person != holder:
                problems.append(f"{actor.person} does not hold `{step.id}` ({holder} does): only its holder or "
                                f"the lead of {step.assignee} may hand it over")
            elif to not in team:
                problems.append(f"{to} is not a member of {step.assignee} ({', '.join(sorted(team))}); "
                                f"its lead may hand it to anyone")
            if problems:
                raise human.ReportRefused(problems)
            now = self.clock.now()
            if link is not None:
                t.store.use_link(link, action="hand-over", now=now)
            t.store.claim_step(view, step.id, to, now)
            change.record(RecordKind.STEP_HANDED_OVER, step.id, actor=actor.person, to=to, holder=holder,
                          note=note, **actor.facts())
            change.page("handed_over", step.id, [to],
                        level={"key": "handover", "message": "handed_over", "by": actor.person, "note": note})
        log.info("event=step_handed_over run=%s step=%s actor=%s to=%s", view.id, step_id, actor.described(), to)
        return to

    def ask_for_help(self, run_id: str, step_id: str, actor: Actor | str, note: str = "", *,
                     link: Claim | None = None) -> list[str]:
        """"Need help": the step escalates to its next level now (one that reaches beyond the assignee),
        or to the assignee role's lead when its ladder has none left. Returns who is paged (as written)."""
        actor = as_actor(actor)
        with self._on_step(run_id, step_id, actor) as (t, change, step):
            view = change.view
            now = self.clock.now()
            if link is not None:
                t.store.use_link(link, action="help", now=now)
            armed = t.store.armed_ladder(view.id, step.id)
            wanted = change.help_levels(step, armed.level if armed is not None else None)
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
        log.info("event=help_asked run=%s step=%s actor=%s notify=%s", view.id, step_id, actor.described(),
                 ",".join(notify))
        return notify

    # --- status cadences ------------------------------------------------------------------

    def post_update(self, run_id: str, actor: Actor | str, text: str) -> int:
        """A status update on an open run, by a person of config; returns its record's seq.

        Anyone who may act on the run's steps or is of its owner role may post one. It keeps the
        run's status cadence (the next ask still comes; a missed-update check finds it).
        """
        actor = as_actor(actor)
        text = text.strip()
        if not text:
            raise InputRefused(["a status update needs some text: what is happening now?"])
        with self.transaction() as t:
            change = t.change(run_id)
            view = change.view
            if not view.is_open:
                raise StepNotActive(f"run {view.id} is {view.run['status']}: it takes no status updates")
            if actor.person not in self.site.people:
                raise InputRefused([str(UnknownPerson(actor.person, self.site))])
            seq = change.record(RecordKind.STATUS_UPDATE, actor=actor.person, text=text[:4000], **actor.facts())
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

    # --- automated steps (called from the Prefect tasks) ---------------------------------------

    def mark_running(self, run_id: str, step_id: str) -> bool:
        """Claim a ready automated step; False when it already finished (never run twice)."""
        with self.transaction() as t:
            state = t.store.step_state(run_id, step_id)
            if state in TERMINAL_STEP:
                return False
            if state == StepState.READY:
                t.store.mark_running(run_id, step_id)
                t.store.record(RecordKind.STEP_STARTED, run_id, step_id)
            return True

    def complete(self, run_id: str, step_id: str, outputs: dict[str, Any], error: str | None = None) -> None:
        """Record the outcome of an automated step (done, or failed with the error)."""
        with self.transaction() as t:
            change = t.change(run_id)
            if change.view.state(step_id) in TERMINAL_STEP:
                return
            change.set_step(step_id, StepState.FAILED if error else StepState.DONE, result=outputs, reason=error)

    # --- cancel ------------------------------------------------------------------------

    def cancel(self, run_id: str, reason: str, actor: Actor | str | None = None) -> RunView:
        """Stop a run: open steps cancelled, timers disarmed, people told, flow run cancelled.

        ``actor``: who cancels, recorded on ``run_cancelled`` with how it came (a bare name is a
        Python caller's, ``via direct``).
        """
        if not reason or not reason.strip():
            raise InputRefused(["a reason is required to cancel a run"])
        who = as_actor(actor) if actor else None
        with self.transaction() as t:
            change = t.change(run_id)
            if not change.view.is_open:
                raise StepNotActive(f"run {change.id} is already {change.view.run['status']}")
            change.cancel(reason, who.person if who else None, who.facts() if who else None)
        if self.launcher is not None:
            self.launcher.cancel(change.id)
        return change.view

    # --- the Prefect side's bookkeeping ------------------------------------------------------

    def run_for_flow_run(self, flow_run_id: str) -> str | None:
        """The run a Prefect flow run belongs to, if the ledger knows it."""
        with self.ledger.read() as conn:
            return RunStore.run_of_flow_run(conn, flow_run_id)

    def bind_flow_run(self, run_id: str, flow_run_id: str) -> None:
        """Remember which flow run executes a run (once)."""
        with self.transaction() as t:
            if t.store.run_value(run_id, "flow_run_id") != flow_run_id:
                t.store.set_run(run_id, flow_run_id=flow_run_id)
                t.store.record(RecordKind.FLOW_RUN_BOUND, run_id, flow_run_id=flow_run_id)

    def suspend_count(self, run_id: str) -> int:
        """How many times the run's flow run suspended (0 for an unknown run)."""
        with self.ledger.read() as conn:
            return RunStore.suspends_of(conn, run_id)

    def begin_suspend(self, run_id: str) -> int:
        """Count a suspension of the run's flow run; the count keys its resume input."""
        with self.transaction() as t:
            count = t.store.run_value(run_id, "suspends") + 1
            t.store.set_run(run_id, suspends=count)
        return count

    def automation_failed(self, run_id: str, reason: str, attempts: int) -> bool:
        """The run's flow run could not be created (``attempts`` tries): recorded (``launch_given_up``) and its
        owner paged with ``reason``; its people's steps go on. False (nothing written) when the run is closed
        or this was said already."""
        with self.transaction() as t:
            change = t.change(run_id)
            if not change.view.is_open or RunStore.launches_given_up(t.store.conn, [change.id]):
                return False
            change.record(RecordKind.LAUNCH_GIVEN_UP, reason=reason, attempts=attempts)
            change.page("automation_failed", None, [change.view.sop.owner], level={"reason": reason})
        return True

    def note(self, run_id: str, step_id: str | None, kind: str, actor: str | None = None, **data: Any) -> None:
        """Append a record that changes no state (a refused report, a failed attempt…)."""
        with self.transaction() as t:
            t.store.record(kind, run_id, step_id, actor=actor, **data)

    # --- reading ----------------------------------------------------------------------------

    def view(self, run_id: str) -> RunView:
        """A run as it stands now (RunNotFound when unknown)."""
        from flows.engine.store import load_view

        with self.ledger.read() as conn:
            return load_view(conn, run_id)


__all__ = ["Engine", "InputRefused", "LinkRefused", "Page", "Plan", "RunChange", "RunNotFound", "StartResult",
           "StepHeld", "StepNotActive",
           "check_inputs"]
