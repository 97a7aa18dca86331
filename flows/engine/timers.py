"""Durable timers: deadlines, escalation levels and waits, fired at their instant.

Timers are rows in the ledger, stored when a step becomes ready — before they are needed —
so they survive every process restarting. Any number of timer services may run: each
firing is claimed with a conditional UPDATE (fired_at IS NULL), so exactly one wins, and
the claim re-checks the step in the same transaction (a timer of a finished step does
nothing). Timers that came due while nothing ran fire on start-up, marked late.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flows.clock import scaled
from flows.engine.change import RunChange
from flows.engine.holds import hold_expired, run_hold_expired
from flows.engine.store import RunStore, TimerClaim
from flows.engine.transitions import Engine
from flows.language.cadence import cadence_targets, effective_cadence
from flows.language.durations import format_duration
from flows.language.steps.human import HumanStep
from flows.ledger.outage import Outage
from flows.ledger.vocabulary import TIMED_OUT_NOTE, RecordKind, StepState, TimerKind

log = logging.getLogger("sop.timers")
LATE_TOLERANCE = timedelta(seconds=2)
#: who a run's missed deadline pages (the cadence's words: its owner role, and that role's lead); whoever holds an open
#: step is told too (``run_overdue_holder``)
RUN_OVERDUE_TO = ("owner", "lead")
#: how many firings a service remembers (a long-running service forgets the oldest)
KEEP_FIRED = 1000


@dataclass
class Fired:
    """What one firing did, for logs, drills and tests."""

    timer_id: int
    run_id: str
    step_id: str
    kind: str
    level: str
    due_at: datetime
    fired_at: datetime
    late_ms: int
    acted: bool


class TimerService:
    """Fires due timers; run one per ``sop serve`` (more are safe: claims are fenced)."""

    def __init__(self, engine: Engine, name: str | None = None, poll: float = 0.05):
        self.engine = engine
        self.ledger = engine.ledger
        self.clock = engine.clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.poll = poll
        #: the latest firings (for drills, tests and ``sop timers``), at most :data:`KEEP_FIRED`
        self.fired: deque[Fired] = deque(maxlen=KEEP_FIRED)
        #: how many timers this service fired in all
        self.fired_count = 0
        #: timers the watchdog flagged and still stuck (forgotten once they fire or go)
        self._alarmed: set[int] = set()

    def due(self, limit: int = 100) -> list[Any]:
        """Armed timers whose instant has come, oldest first."""
        now = self.clock.now()
        with self.ledger.read() as conn:
            return RunStore.due_timers(conn, now, limit)

    def next_instant(self) -> datetime | None:
        """When the next armed timer is due (None: nothing armed)."""
        with self.ledger.read() as conn:
            return RunStore.next_timer_instant(conn)

    def fire_due(self) -> list[Fired]:
        """Fire every timer that is due now; returns what fired."""
        out = []
        for row in self.due():
            try:
                fired = self.fire(row.id)
            except Exception:
                log.exception("event=timer_error timer=%s run=%s step=%s", row.id, row.run_id, row.step_id)
                continue
            if fired is not None:
                out.append(fired)
        return out

    def fire(self, timer_id: int) -> Fired | None:
        """Claim and fire one timer; None when another service claimed it first."""
        engine = self.engine
        follow_up = False
        with engine.transaction() as t:
            now = self.clock.now()
            claim = t.store.claim_timer(timer_id, now, self.name)
            if claim is None:
                return None
            change = t.change(claim.run_id)
            view = change.view
            acted = False
            late = claim.late_ms > LATE_TOLERANCE.total_seconds() * 1000
            if view.is_open:
                if claim.kind == TimerKind.RUN_DEADLINE:
                    acted = self._run_deadline(change, claim, late)
                elif claim.kind in (TimerKind.CADENCE, TimerKind.CADENCE_CHECK):
                    acted = self._cadence(change, t.store, claim, late)
                elif claim.kind == TimerKind.HOLD and not claim.step_id:  # the run's own hold
                    acted = run_hold_expired(change, claim.level, claim.late_ms, late)
                elif view.state(claim.step_id) == StepState.ACTIVE:
                    acted = True
                    step = view.sop.step(claim.step_id)
                    if claim.kind == TimerKind.LADDER:
                        self._escalate(change, step, claim, late)
                    elif claim.kind == TimerKind.DUE:
                        follow_up = self._deadline(change, step, claim, late)
                    elif claim.kind == TimerKind.HOLD:
                        acted = hold_expired(change, step, claim.level, claim.late_ms, late)
                    elif claim.kind == TimerKind.WAIT:  # no deadline to meet (it is the clock): how late it ended
                        change.set_step(step.id, StepState.DONE, result={},
                                        facts={"late_ms": claim.late_ms, "late": late})
                        follow_up = True
            if late:
                log.warning("event=timer_late timer=%s run=%s step=%s kind=%s late_ms=%d", timer_id, claim.run_id,
                            claim.step_id, claim.kind, claim.late_ms)
        if follow_up:
            engine.advance(claim.run_id)
            if engine.launcher is not None:
                engine.launcher.nudge_soon(claim.run_id)  # never waits on Prefect: flagged, then resumed aside
        fired = Fired(timer_id, claim.run_id, claim.step_id, claim.kind, claim.level, claim.due_at, now,
                      claim.late_ms, acted)
        self.fired.append(fired)
        self.fired_count += 1
        log.info("event=timer_fired timer=%s run=%s step=%s kind=%s level=%s late_ms=%d acted=%s", timer_id,
                 claim.run_id, claim.step_id or "-", claim.kind, claim.level or "-", claim.late_ms, acted)
        return fired

    def _cadence(self, change: RunChange, store: RunStore, claim: TimerClaim, late: bool) -> bool:
        """A status period ends (ask the owner, arm the check and the next period) or its grace is over
        (no update since the period began: missed, escalated)."""
        view = change.view
        cadence = effective_cadence(view.sop, self.engine.site)
        if cadence is None:  # the class default was taken out of config meanwhile
            return False
        period = int(claim.level or "1")
        every = scaled(cadence.every, view.speed)
        if claim.kind == TimerKind.CADENCE:
            if store.asks_stopped(view.id):  # missed in a row: silent until an update comes (then asked again)
                change.arm("", TimerKind.CADENCE, str(period + 1), claim.due_at + every)
                return False
            change.record(RecordKind.STATUS_ASKED, period=period, due_at=claim.due_at, late_ms=claim.late_ms,
                          late=late)
            change.page("status_due", None, cadence_targets(view.sop.owner, cadence.notify, self.engine.site),
                        level={"key": str(period), "message": "status_due", "every": format_duration(cadence.every),
                               "ask": cadence.message})
            change.arm("", TimerKind.CADENCE_CHECK, str(period), claim.due_at + scaled(cadence.grace, view.speed))
            change.arm("", TimerKind.CADENCE, str(period + 1), claim.due_at + every)
            return True
        last = store.last_record_at(view.id, RecordKind.STATUS_UPDATE)
        grace = scaled(cadence.grace, view.speed)
        if last is not None and last >= claim.due_at - grace - every:  # an update within the period (or its grace)
            return False
        change.record(RecordKind.STATUS_MISSED, period=period, last_update_at=last, late_ms=claim.late_ms, late=late)
        change.page("status_missed", None, cadence_targets(view.sop.owner, cadence.escalate, self.engine.site),
                    level={"key": str(period), "message": "status_missed", "every": format_duration(cadence.every),
                           "last_update_at": last.isoformat() if last else None})
        missed = store.count_records_since(view.id, RecordKind.STATUS_MISSED, last)  # in a row: since the last update
        if missed >= cadence.max_missed:  # nobody answers: stop asking (and escalating) until someone posts
            change.record(RecordKind.STATUS_ASKS_STOPPED, missed=missed, period=period)
        return True

    def _run_deadline(self, change: RunChange, claim: TimerClaim, late: bool) -> bool:
        """The run passed its own deadline: its owner and the owner role's lead are paged (those above own the
        deadline and get its escalation, as a late step's ladder reaches its lead), and whoever holds one of its
        open steps learns that the run is late on them: one page each, listing their steps, and none to someone
        the owner's page reaches already."""
        view = change.view
        change.record(RecordKind.RUN_OVERDUE, due_at=claim.due_at, late_ms=claim.late_ms, late=late)
        above = cadence_targets(view.sop.owner, list(RUN_OVERDUE_TO), self.engine.site)
        change.page("run_overdue", None, above)
        told = set(change.people_paged(above, None))
        mine: dict[str, list[str]] = {}
        for step in view.sop.steps:
            if isinstance(step, HumanStep) and view.state(step.id) == StepState.ACTIVE:
                person = change.person_holding(step)
                if person not in told:
                    mine.setdefault(person, []).append(step.id)
        for person, ids in mine.items():
            change.page("run_overdue_holder", None, [person], level={"steps": ids})
        return True

    @staticmethod
    def _escalate(change: RunChange, step: HumanStep, claim: TimerClaim, late: bool) -> None:
        change.escalate(step, claim.level, due_at=claim.due_at, late_ms=claim.late_ms, late=late)

    @staticmethod
    def _deadline(change: RunChange, step: Any, claim: TimerClaim, late: bool) -> bool:
        change.record(RecordKind.STEP_OVERDUE, step.id, due_at=claim.due_at, late_ms=claim.late_ms, late=late,
                      on_timeout=step.on_timeout)
        action = step.on_timeout
        if action is None:
            return False  # non-interrupting: the ladder keeps escalating, the step keeps waiting
        if action == "skip":
            change.set_step(step.id, StepState.SKIPPED, reason=f"{TIMED_OUT_NOTE} (on_timeout: skip)")
        elif action == "fail":
            change.set_step(step.id, StepState.FAILED, reason=f"{TIMED_OUT_NOTE} (on_timeout: fail)")
        else:
            change.set_step(step.id, StepState.TIMED_OUT, reason=f"{TIMED_OUT_NOTE}, falling back to {step.fallback}")
            change.release_fallback(step.fallback)
        # the owner must know: the step is closed by its SOP, not late (no "finish it now", no ladder to come)
        owner = change.view.sop.owner
        change.page("step_timed_out", step.id, [owner])
        holder = change.person_holding(step)
        if holder not in change.people_paged([owner], step.id):  # whom it was with may be working on it still (one
            # page each)
            change.page("step_withdrawn", step.id, [holder])
        return True

    def advance_to(self, to: datetime) -> None:
        """On a :class:`~flows.clock.ManualClock`: move time to ``to``, firing every timer at its own instant."""
        while (instant := self.next_instant()) is not None and instant <= to:
            self.clock.set(max(self.clock.now(), instant))  # type: ignore[attr-defined]
            self.fire_due()
        self.clock.set(to)  # type: ignore[attr-defined]

    def watchdog(self) -> list[int]:
        """Timers more than the tolerance past due and still unfired: flagged once each."""
        limit = self.clock.now() - LATE_TOLERANCE
        with self.ledger.read() as conn:
            stuck = RunStore.timers_due_before(conn, limit)
        fresh = [t for t in stuck if t not in self._alarmed]
        self._alarmed = set(stuck)  # only the ones still stuck: the memory never outgrows the late timers
        for timer_id in fresh:
            log.warning("event=watchdog_timer_late timer=%s", timer_id)
        return fresh

    def run(self, stop: threading.Event) -> None:
        """Fire timers until ``stop`` is set: catch up on late ones first, then stay on time."""
        log.info("event=timers_started name=%s", self.name)
        ticks = 0
        trouble = Outage(log, "timers_loop_error", self.poll)
        while not stop.is_set():
            try:
                self.fire_due()
                ticks += 1
                if ticks % 20 == 0:
                    self.watchdog()
                nxt = self.next_instant()
                trouble.ok()
            except Exception as exc:  # noqa: BLE001 - the loop goes on; Outage logs it as it deserves
                stop.wait(trouble.failed(exc))
                continue
            wait = self.poll
            if nxt is not None:
                wait = min(self.poll, max(0.0, (nxt - self.clock.now()).total_seconds()))
            stop.wait(wait)
        log.info("event=timers_stopped name=%s", self.name)

