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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.clock import scaled
from flows.engine.transitions import Engine, Page
from flows.engine.view import load_view
from flows.language.ladder import levels
from flows.language.steps.human import HumanStep
from flows.ledger.schema import steps, timers

log = logging.getLogger("sop.timers")
LATE_TOLERANCE = timedelta(seconds=2)


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
        self.fired: list[Fired] = []
        self._alarmed: set[int] = set()

    def due(self, limit: int = 100) -> list[Any]:
        """Armed timers whose instant has come, oldest first."""
        now = self.clock.now()
        with self.ledger.read() as conn:
            return list(conn.execute(sa.select(timers).where(
                timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None) & (timers.c.due_at <= now))
                .order_by(timers.c.due_at).limit(limit)))

    def next_instant(self) -> datetime | None:
        """When the next armed timer is due (None: nothing armed)."""
        with self.ledger.read() as conn:
            value = conn.execute(sa.select(sa.func.min(timers.c.due_at)).where(
                timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))).scalar()
        from flows.ledger import utc

        return utc(value)

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
        pages: list[Page] = []
        follow_up = False
        with self.ledger.transaction() as tx:
            now = self.clock.now()
            row = tx.conn.execute(sa.select(timers).where(timers.c.id == timer_id)).first()
            if row is None or row.fired_at is not None or row.cancelled_at is not None:
                return None
            from flows.ledger import utc

            due_at = utc(row.due_at)
            late_ms = max(0, int((now - due_at).total_seconds() * 1000))  # type: ignore[operator]
            claimed = tx.conn.execute(timers.update().where(
                (timers.c.id == timer_id) & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))
                .values(fired_at=now, fired_by=self.name, late_ms=late_ms)).rowcount
            if claimed != 1:
                return None
            view = load_view(tx.conn, row.run_id)
            acted = False
            late = late_ms > LATE_TOLERANCE.total_seconds() * 1000
            if view.is_open:
                if row.kind == "run_deadline":
                    tx.append("run_overdue", view.id, due_at=due_at, late_ms=late_ms, late=late)
                    pages.append(Page("run_overdue", view.id, None, [view.sop.owner]))
                    acted = True
                elif view.state(row.step_id) == "active":
                    acted = True
                    step = view.sop.step(row.step_id)
                    if row.kind == "ladder":
                        self._escalate(tx, view, step, row, due_at, late_ms, late, pages)
                    elif row.kind == "due":
                        follow_up = self._deadline(tx, view, step, due_at, late_ms, late, pages)
                    elif row.kind == "wait":
                        engine._set_step(tx, view, step.id, "done", result={})
                        follow_up = True
            if late:
                log.warning("event=timer_late timer=%s run=%s step=%s kind=%s late_ms=%d", timer_id, row.run_id,
                            row.step_id, row.kind, late_ms)
            engine._queue(tx, pages)
        engine._send(pages)
        if follow_up:
            engine.advance(row.run_id)
            if engine.launcher is not None:
                engine.launcher.nudge(row.run_id)
        fired = Fired(timer_id, row.run_id, row.step_id, row.kind, row.level, due_at, now, late_ms, acted)  # type: ignore[arg-type]
        self.fired.append(fired)
        log.info("event=timer_fired timer=%s run=%s step=%s kind=%s level=%s late_ms=%d acted=%s", timer_id,
                 row.run_id, row.step_id or "-", row.kind, row.level or "-", late_ms, acted)
        return fired

    def _escalate(self, tx: Any, view: Any, step: HumanStep, row: Any, due_at: datetime, late_ms: int, late: bool,
                  pages: list[Page]) -> None:
        ladder = list(levels(view.sop.ladder_for(step), step.due))
        index = next((i for i, lvl in enumerate(ladder) if lvl.key == row.level), None)
        if index is None:  # the pinned SOP has no such level (cannot happen unless edited)
            return
        level = ladder[index]
        tx.append("escalation", view.id, step.id, level=level.key, message=level.message, notify=list(level.notify),
                  due_at=due_at, late_ms=late_ms, late=late)
        pages.append(Page(level.message, view.id, step.id, list(level.notify),
                          level={"key": level.key, "message": level.message, "late_ms": late_ms}))
        if index + 1 < len(ladder):
            nxt = ladder[index + 1]
            ready_at = view.steps[step.id]["ready_at"]
            self.engine._arm(tx, view, step.id, "ladder", nxt.key, ready_at + scaled(nxt.offset, view.speed))

    def _deadline(self, tx: Any, view: Any, step: Any, due_at: datetime, late_ms: int, late: bool,
                  pages: list[Page]) -> bool:
        tx.append("step_overdue", view.id, step.id, due_at=due_at, late_ms=late_ms, late=late,
                  on_timeout=step.on_timeout)
        action = step.on_timeout
        if action is None:
            return False  # non-interrupting: the ladder keeps escalating, the step keeps waiting
        if action == "skip":
            self.engine._set_step(tx, view, step.id, "skipped", reason="timed out (on_timeout: skip)")
        elif action == "fail":
            self.engine._set_step(tx, view, step.id, "failed", reason="timed out (on_timeout: fail)")
        else:
            self.engine._set_step(tx, view, step.id, "timed_out", reason=f"timed out, falling back to {step.fallback}")
            tx.conn.execute(steps.update().where((steps.c.run_id == view.id) & (steps.c.step_id == step.fallback)
                                                 & (steps.c.state == "standby")).values(state="pending"))
        pages.append(Page("overdue", view.id, step.id, [view.sop.owner]))
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
            stuck = [r.id for r in conn.execute(sa.select(timers.c.id).where(
                timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None) & (timers.c.due_at < limit)))]
        fresh = [t for t in stuck if t not in self._alarmed]
        for timer_id in fresh:
            self._alarmed.add(timer_id)
            log.warning("event=watchdog_timer_late timer=%s", timer_id)
        return fresh

    def run(self, stop: threading.Event) -> None:
        """Fire timers until ``stop`` is set: catch up on late ones first, then stay on time."""
        log.info("event=timers_started name=%s", self.name)
        ticks = 0
        while not stop.is_set():
            try:
                self.fire_due()
                ticks += 1
                if ticks % 20 == 0:
                    self.watchdog()
                nxt = self.next_instant()
            except Exception:
                log.exception("event=timers_loop_error")
                nxt = None
            wait = self.poll
            if nxt is not None:
                wait = min(self.poll, max(0.0, (nxt - self.clock.now()).total_seconds()))
            stop.wait(wait)
        log.info("event=timers_stopped name=%s", self.name)
