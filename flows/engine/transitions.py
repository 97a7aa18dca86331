"""The engine: the state machine of a run, kept in the ledger.

Every transition (start, a step becoming ready, a report, a timer, a cancel) is one ledger
transaction, so any process — the CLI, the API, a flow run, the timer service — can make
it, and the database decides races. The engine decides *what* happens (this module, and
the moves of :mod:`flows.engine.change`); the run store (:mod:`flows.engine.store`) holds
every statement; Prefect executes the automated steps (see ``flows.prefect``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from flows.clock import Clock, SystemClock, scaled
from flows.engine import participants
from flows.engine.change import Page, Plan, RunChange, Transaction
from flows.engine.dedup import fitting, open_key, rendered_key
from flows.engine.followups import FollowUpStarts
from flows.engine.holds import HoldActions
from flows.engine.inputs import InputRefused, StepNotActive, check_inputs, new_run_id
from flows.engine.links import LinkRefused, Links
from flows.engine.oncall import on_call_now
from flows.engine.people import PeopleActions, StepHeld
from flows.engine.secrets import site_secret
from flows.engine.store import RunStore
from flows.engine.view import RunNotFound, RunView
from flows.language.actors import Actor, as_actor
from flows.language.cadence import effective_cadence
from flows.language.calendar import calendar_for, calendar_name, instant_after
from flows.language.durations import check_speed
from flows.language.fields import text_problem
from flows.language.library import Library, LoadedSop
from flows.language.oncall import OnCall
from flows.language.spec import Sop
from flows.ledger import Ledger, dumps
from flows.ledger.vocabulary import TERMINAL_STEP, RecordKind, RunStatus, StepState, TimerKind
from flows.logfmt import kv

log = logging.getLogger("sop.engine")
#: what :meth:`Engine.mark_running` answers: make the attempt; the step already finished; a ``once`` step was cut
ATTEMPT, FINISHED, CUT = "attempt", "finished", "cut"


@dataclass
class StartResult:
    run_id: str
    attached: bool = False
    repeats: int = 0


def _starter(starter: Actor | str | None) -> tuple[str | None, dict[str, Any]]:
    """Who a run's start or repeat is recorded as (a person or what started it), and how they came."""
    return (starter.person, starter.facts()) if isinstance(starter, Actor) else (starter, {})


def _copies(copies: int) -> dict[str, int]:
    """The ``copies`` of a ``trigger_repeated`` record: written only when one record stands for several."""
    return {"copies": copies} if copies > 1 else {}


class Engine(PeopleActions, HoldActions, FollowUpStarts):
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
                                max_age=web.link_max_age, sign_in_ttl=web.sign_in_ttl,
                                person_known=lambda person: person in self.site.people)  # the site as reloaded
        return self._links

    @property
    def site(self):  # noqa: ANN201 - Site
        return self.library.site

    @contextmanager
    def transaction(self, head: bool = False) -> Iterator[Transaction]:
        """One write transaction over the run store, alone with each run it changes (the store holds
        a run before it reads it: :meth:`flows.ledger.Tx.hold_run`); the pages its changes decide are
        queued in its outbox inside it and sent once it commits. The runs its changes ended start
        their follow-ups inside it too (``flows.engine.followups``): the end and what it starts commit
        together or not at all. An error writes nothing. ``head``: it appends before it holds any run (a new
        run): see ``Ledger.transaction``."""
        with self.ledger.transaction(per_run=True, head=head) as tx, RunStore(tx) as store:
            done = Transaction(store, self.site)
            yield done
            launches = self.start_follow_ups(done) if done.ended else []
            if self.pager is not None and done.pages:
                self.pager.queue(store.tx, done.pages)
        if self.pager is not None and done.pages:
            pages = done.pages
            self.ledger.after_commit(lambda: self.pager.send_all(self, pages))  # type: ignore[union-attr]
        if self.launcher is not None:
            for run_id in launches:
                self.ledger.after_commit(lambda run_id=run_id: self._launch(run_id))  # type: ignore[misc]

    # --- start ------------------------------------------------------------------------

    def start(self, sop_id: str, inputs: dict[str, Any] | None = None, *, initiator: Actor | str | None = None,
              trigger: dict[str, Any] | None = None, speed: float | None = None,
              flow_run_id: str | None = None, launch: bool = True, copies: int = 1,
              rendered: bool = False) -> StartResult:
        """Start a run (or attach to the open run with the same dedup key).

        ``initiator``: the person who starts it, as an :class:`Actor` (how it came is recorded
        with it), or the name of what started it (``alertmanager``, ``drill``, a scheduler).

        ``copies``: the signal arrived that many times at once (one payload): it starts or attaches
        once, and the copies past the one that starts count as repeats in one ``trigger_repeated`` record.

        ``rendered``: the inputs were rendered from a signal (an empty text is its word), not given by a
        person (a blank is not given): :func:`check_inputs`.

        Records the run with its pinned SOP text, pages the owner at once, assigns the
        first human steps, then asks the launcher for a Prefect flow run (when that fails, the
        failure is logged and `sop serve` launches the run later: the run is recorded and paged).
        """
        loaded = self.library.get(sop_id)
        sop = loaded.sop
        typed = check_inputs(sop, inputs or {}, rendered=rendered)
        speed = float(self.site.settings.speed or 1.0) if speed is None else speed
        if (problem := check_speed(speed)) is not None:
            raise InputRefused([problem])
        speed = float(speed)
        if found := participants.trigger_problems(self.site, trigger):  # a drill's people: each a person of config/
            raise InputRefused(found)
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
                 trigger: dict[str, Any] | None = None, *, rendered: bool = False) -> str | None:
        """The open run that ``start`` with these inputs would attach to (same SOP, same dedup key), or None."""
        sop = self.library.get(sop_id).sop
        key = self._dedup_key(sop, check_inputs(sop, inputs or {}, rendered=rendered), trigger)
        if key is None:
            return None
        with self.ledger.read() as conn:
            return RunStore.open_run_of(conn, open_key(sop.id, key, trigger))

    def _dedup_key(self, sop: Sop, inputs: dict[str, Any], trigger: dict[str, Any] | None) -> str | None:
        """This start's dedup key as rendered (``flows.engine.dedup``: compared caseless, stored as written)."""
        return rendered_key(sop.dedup, inputs, trigger, dict(self.site.vars))

    def _insert_run(self, loaded: LoadedSop, inputs: dict[str, Any], key: str | None,
                    starter: Actor | str | None, trigger: dict[str, Any] | None, speed: float,
                    flow_run_id: str | None, copies: int = 1) -> tuple[StartResult, Plan, RunView | None]:
        """Insert the run and make its first steps ready (or attach to the open one), in one transaction.

        Returns the new run's view as the transaction left it (None when attached).
        """
        missed = False
        if key is not None and self.ledger.attaches_alone():  # PostgreSQL: a repeat alone is one round trip
            initiator, facts = _starter(starter)
            found = RunStore.attach_alone(self.ledger, open_key(loaded.sop.id, key, trigger), copies, self.clock.now(), initiator,
                                          {"trigger": trigger, **_copies(copies), **facts})
            if found is not None:
                return StartResult(found[0], attached=True, repeats=found[1]), Plan(), None
            # no run holds the key: the new run's transaction looks no more (a run another process opens meanwhile
            # fails this one's insert on the key's unique index: start attaches to it then), and its lane's head
            # comes with its BEGIN. Not when the ledger has no sop_attach (then nothing looked)
            missed = self.ledger.attaches_alone()
        with self.transaction(head=missed) as t:
            result, plan, view = self.open_run_in(t, loaded, inputs, key, starter, trigger, speed, flow_run_id, copies,
                                                  attach=not missed)
        text_hash = loaded.text_hash
        if not result.attached and text_hash not in self._pinned_texts:
            self.ledger.after_commit(lambda: self._pinned_texts.add(text_hash))
        if not result.attached:
            log.info("event=run_started run=%s sop=%s speed=%g initiator=%s", result.run_id, loaded.sop.id, speed,
                     starter.person if isinstance(starter, Actor) else starter)
        return result, plan, view

    def open_run_in(self, t: Transaction, loaded: LoadedSop, inputs: dict[str, Any], key: str | None,
                    starter: Actor | str | None, trigger: dict[str, Any] | None, speed: float,
                    flow_run_id: str | None, copies: int = 1, *, parent: tuple[str, str] | None = None,
                    window_ends_at: datetime | None = None,
                    attach: bool = True) -> tuple[StartResult, Plan, RunView | None]:
        """In transaction ``t``: attach to the open run with this dedup key, or insert the run, page its owner and
        make its first steps ready. ``inputs`` are checked already (``check_inputs``).

        ``parent``: (run id, follow-up index) of the run whose end starts this one (``flows.engine.followups``);
        ``window_ends_at``: when that follow-up must be done: the run's deadline, or its SOP's own when sooner.
        ``attach`` False: the caller looked for the open run a moment ago and found none (see ``_insert_run``).
        """
        sop = loaded.sop
        initiator, facts = _starter(starter)
        store = t.store
        # the run's start, once the write lock is held (waiting for it is not part of the run): its
        # deadline counts from it and its run_started record carries it, so an audit of a drill
        # compressed 120× reads a 2h deadline as 2h, not the 1h59m59s of a few milliseconds' wait
        now = self.clock.now()
        held = open_key(sop.id, key, trigger) if key is not None else None  # compared caseless (flows.engine.dedup)
        shown = fitting(key) if key is not None else None  # the run's subject, as this first start wrote it
        if held is not None and attach:
            found = store.attach(held, copies, now, initiator,
                                 {"trigger": trigger, **_copies(copies), **facts})
            if found is not None:
                open_id, repeats = found
                return StartResult(open_id, attached=True, repeats=repeats), Plan(), None
        text_hash = loaded.text_hash
        if text_hash not in self._pinned_texts and not store.is_pinned(text_hash):
            store.pin(text_hash, sop.id, sop.version, loaded.text, now)
        run_id = new_run_id()
        calendar = calendar_for(sop, None, self.site)
        deadline_at = instant_after(now, sop.deadline, calendar=calendar, speed=speed) if sop.deadline else None
        if window_ends_at is not None:
            deadline_at = min(deadline_at, window_ends_at) if deadline_at is not None else window_ends_at
        run = dict(
            id=run_id, sop_id=sop.id, sop_hash=text_hash, title=sop.title, sop_class=sop.class_,
            priority=sop.priority, status=RunStatus.RUNNING, initiator=initiator,
            trigger=dumps(trigger) if trigger else None, inputs=dumps(inputs), dedup_key=shown,
            open_key=held, repeats=copies - 1, last_seen_at=now, speed=speed,
            started_at=now, deadline_at=deadline_at, flow_run_id=flow_run_id,
            parent_run_id=parent[0] if parent else None, follow_up=parent[1] if parent else None)
        fallbacks = {s.fallback for s in sop.steps if s.fallback}
        view = store.new_run(run, [
            {"run_id": run_id, "step_id": s.id, "kind": s.kind,  # type: ignore[attr-defined]
             "state": StepState.STANDBY if s.id in fallbacks else StepState.PENDING,
             "assignee": getattr(s, "assignee", None), "round": 1} for s in sop.steps], sop)
        change = t.change(view)
        change.record(RecordKind.RUN_STARTED, actor=initiator, at=now, sop=sop.id, sop_hash=text_hash,
                      version=sop.version, inputs=inputs, trigger=trigger, speed=speed, dedup_key=shown,
                      deadline_at=deadline_at, priority=sop.priority, **facts,
                      **({"calendar": calendar_name(sop, None, self.site),
                          "wall_deadline_at": instant_after(now, sop.deadline, speed=speed) if sop.deadline
                          else None} if calendar is not None else {}))
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

    # --- automated steps (called from the Prefect tasks) ---------------------------------------

    def mark_running(self, run_id: str, step_id: str, once: bool = False) -> str:
        """Claim a ready automated step for an attempt: :data:`ATTEMPT`; :data:`FINISHED` when it already finished
        (never run twice); :data:`CUT` for a ``once`` step whose last attempt began and neither ended nor failed (its
        executor or flow run was lost mid-way: it may have happened, so it is not made again)."""
        with self.transaction() as t:
            state = t.store.step_state(run_id, step_id)
            if state in TERMINAL_STEP:
                return FINISHED
            if state == StepState.READY:
                t.store.mark_running(run_id, step_id)
                t.store.record(RecordKind.STEP_STARTED, run_id, step_id)
            if once:
                began = len(RunStore.attempts(t.store.conn, run_id, step_id, RecordKind.STEP_ATTEMPT_STARTED))
                if began > len(RunStore.attempts(t.store.conn, run_id, step_id, RecordKind.STEP_ATTEMPT_FAILED)):
                    return CUT
                t.store.record(RecordKind.STEP_ATTEMPT_STARTED, run_id, step_id, attempt=began + 1)
            return ATTEMPT

    def failed_attempts(self, run_id: str, step_id: str) -> list[dict[str, Any]]:
        """The attempts of a ready or running automated step that failed so far (their records' data, oldest first),
        made by this flow run or one before it that an executor put back or lost: the next attempt continues the
        count."""
        with self.ledger.read() as conn:
            return RunStore.attempts(conn, run_id, step_id, RecordKind.STEP_ATTEMPT_FAILED)

    def attempt_failed(self, run_id: str, step_id: str, reason: str, outputs: dict[str, Any], of: int) -> int:
        """Record a failed attempt of an automated step (``step_attempt_failed``: its number among the ``of`` the
        step may make, its reason and outputs); returns its number."""
        with self.transaction() as t:
            number = len(RunStore.attempts(t.store.conn, run_id, step_id, RecordKind.STEP_ATTEMPT_FAILED)) + 1
            t.store.record(RecordKind.STEP_ATTEMPT_FAILED, run_id, step_id, attempt=number, of=of, reason=reason,
                           outputs=outputs)
        return number

    def complete(self, run_id: str, step_id: str, outputs: dict[str, Any], error: str | None = None) -> None:
        """Record the outcome of an automated step (done, or failed with the error)."""
        with self.transaction() as t:
            change = t.change(run_id)
            if change.view.state(step_id) in TERMINAL_STEP:
                return
            change.set_step(step_id, StepState.FAILED if error else StepState.DONE, result=outputs, reason=error)
            if error:  # what needed it is blocked at once, and a run left with nothing to do ends in this change:
                change.advance()  # its owner's step_failed page then says so (one page, not that and run_finished)

    # --- cancel ------------------------------------------------------------------------

    def cancel(self, run_id: str, reason: str, actor: Actor | str | None = None) -> RunView:
        """Stop a run: open steps cancelled, timers disarmed, people told, flow run cancelled.

        ``actor``: who cancels, recorded on ``run_cancelled`` with how it came (a bare name is a
        Python caller's, ``via direct``).
        """
        if not reason or not reason.strip():
            raise InputRefused(["a reason is required to cancel a run"])
        if (problem := text_problem(reason, "the reason")) is not None:
            raise InputRefused([problem])
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
