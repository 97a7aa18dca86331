"""The engine: the state machine of a run, kept in the ledger.

Every transition (start, a step becoming ready, a report, a timer, a cancel) is one ledger
transaction, so any process — the CLI, the API, a flow run, the timer service — can make
it, and the database decides races. Prefect executes the automated steps (see
``flows.prefect.deployments``); the engine decides what is ready.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from flows.clock import Clock, SystemClock, scaled
from flows.engine.view import TERMINAL_STEP, RunNotFound, RunView, load_view, new_view, variables
from flows.language.expressions import evaluate, render
from flows.language.ladder import levels
from flows.language.library import Library, LoadedSop
from flows.language.spec import Sop
from flows.language.steps import KINDS, human
from flows.language.steps.human import HumanStep
from flows.ledger import Ledger, Tx, dumps
from flows.ledger.schema import runs, sop_versions, steps, timers

log = logging.getLogger("sop.engine")


class InputRefused(ValueError):
    """Run inputs that do not fit the SOP's declared inputs; one problem per field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class StepNotActive(ValueError):
    """A report for a step that is not waiting for one (unknown, finished, automated…)."""


@dataclass
class StartResult:
    run_id: str
    attached: bool = False
    repeats: int = 0


@dataclass
class Plan:
    """What the flow should do next: run these automated steps, or stop (run finished)."""

    automated: list[str] = field(default_factory=list)
    finished: bool = False


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


def new_run_id() -> str:
    """Short, unique, typeable run ids (``sop done 3f9a…`` accepts any unique prefix)."""
    return secrets.token_hex(5)


def check_inputs(sop: Sop, raw: dict[str, Any]) -> dict[str, Any]:
    """Inputs typed and complete (defaults filled); InputRefused names each bad field."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in raw:
        if name not in sop.inputs:
            problems.append(f"unknown input `{name}` (inputs of {sop.id}: {', '.join(sop.inputs) or 'none'})")
    for name, spec in sop.inputs.items():
        if name not in raw or raw[name] is None:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.is_required:
                problems.append(f"input `{name}` is required ({spec.type}{', one of ' + str(spec.enum) if spec.enum else ''})")
            else:
                out[name] = None  # declared but not given: templates see none, not an unknown variable
            continue
        value = raw[name]
        if isinstance(value, str) and spec.type != "string":
            try:
                value = spec.coerce(value)
            except ValueError as exc:
                problems.append(f"input `{name}`: {exc}")
                continue
        if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = spec.check_value(value)
        if problem:
            problems.append(f"input `{name}`: {problem}")
        out[name] = value
    if problems:
        raise InputRefused(problems)
    return out


# Statements of the hot path, built once: SQLAlchemy builds and keys a fresh statement in
# 100-200 µs, a prebuilt one with bound parameters in about 10 µs (a new run writes ~40).
_B = sa.bindparam
_OPEN_RUN = sa.select(runs.c.id, runs.c.repeats).where(runs.c.open_key == _B("_key"))
_RUN_UPDATE = runs.update().where(runs.c.id == _B("_run"))  # SET columns: the other parameters
_STEP_UPDATE = steps.update().where((steps.c.run_id == _B("_run")) & (steps.c.step_id == _B("_step")))
_SOP_VERSION = sa.select(sop_versions.c.hash).where(sop_versions.c.hash == _B("_hash"))
_TIMER_ARMED = sa.select(timers.c.id).where((timers.c.run_id == _B("_run")) & (timers.c.step_id == _B("_step"))
                                            & (timers.c.kind == _B("_kind")) & (timers.c.level == _B("_level")))
_TIMERS_OPEN = (timers.c.run_id == _B("_run")) & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None)
_CANCEL_RUN_TIMERS = timers.update().where(_TIMERS_OPEN)
_CANCEL_STEP_TIMERS = timers.update().where(_TIMERS_OPEN & (timers.c.step_id == _B("_step")))
_RUN_INSERT = runs.insert()
_STEPS_INSERT = steps.insert()
_TIMER_INSERT = timers.insert()
_SOP_VERSION_INSERT = sop_versions.insert()


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

    @property
    def site(self):  # noqa: ANN201 - Site
        return self.library.site

    # --- start ------------------------------------------------------------------------

    def start(self, sop_id: str, inputs: dict[str, Any] | None = None, *, initiator: str | None = None,
              trigger: dict[str, Any] | None = None, speed: float | None = None,
              flow_run_id: str | None = None, launch: bool = True) -> StartResult:
        """Start a run (or attach to the open run with the same dedup key).

        Records the run with its pinned SOP text, pages the owner at once, assigns the
        first human steps, then asks the launcher for a Prefect flow run (when that fails, the
        failure is logged and `sop serve` launches the run later: the run is recorded and paged).
        """
        loaded = self.library.get(sop_id)
        sop = loaded.sop
        typed = check_inputs(sop, inputs or {})
        speed = float(speed or self.site.settings.speed or 1.0)
        if speed <= 0:
            raise InputRefused([f"speed must be above zero, got {speed}"])
        key = self._dedup_key(sop, typed, trigger)
        pages: list[Page] = []
        for _attempt in range(3):
            try:
                result, plan, _view = self._insert_run(loaded, typed, key, initiator, trigger, speed, flow_run_id, pages)
                break
            except IntegrityError:
                continue  # another process opened the same key a moment ago: attach to it
        else:  # pragma: no cover - three races in a row
            raise RuntimeError(f"could not start or attach a run of {sop_id} for key {key!r}")
        if result.attached:
            return result
        self._send(pages)
        if launch and self.launcher is not None and flow_run_id is None and not plan.finished:
            self.ledger.after_commit(lambda: self._launch(result.run_id))  # in a batch: once it commits
        return result

    def _launch(self, run_id: str) -> None:
        try:
            self.launcher.launch(run_id)  # type: ignore[union-attr]
        except Exception as exc:  # recorded and paged already: `sop serve` launches orphans
            log.warning("event=launch_failed run=%s error=%s (sop serve retries it)", run_id, str(exc)[:300])

    def open_run(self, sop_id: str, inputs: dict[str, Any] | None = None,
                 trigger: dict[str, Any] | None = None) -> str | None:
        """The open run that ``start`` with these inputs would attach to (same SOP, same dedup key), or None."""
        sop = self.library.get(sop_id).sop
        key = self._dedup_key(sop, check_inputs(sop, inputs or {}), trigger)
        if key is None:
            return None
        with self.ledger.read() as conn:
            return conn.execute(sa.select(runs.c.id).where(runs.c.open_key == f"{sop.id}:{key}")).scalar()

    def _dedup_key(self, sop: Sop, inputs: dict[str, Any], trigger: dict[str, Any] | None) -> str | None:
        if not sop.dedup:
            return None
        config = {k: v for k, v in self.site.vars.items()}
        return render(sop.dedup, {"inputs": inputs, "trigger": trigger or {}, "config": config}).strip() or None

    def _insert_run(self, loaded: LoadedSop, inputs: dict[str, Any], key: str | None, initiator: str | None,
                    trigger: dict[str, Any] | None, speed: float, flow_run_id: str | None,
                    pages: list[Page]) -> tuple[StartResult, Plan, RunView | None]:
        """Insert the run and make its first steps ready (or attach to the open one), in one transaction.

        Queues the owner's page and the first assignments in ``pages``. Returns the new run's
        view as the transaction left it (None when attached).
        """
        sop = loaded.sop
        with self.ledger.transaction() as tx:
            # the run's start, once the write lock is held (waiting for it is not part of the run): its
            # deadline counts from it and its run_started record carries it, so an audit of a drill
            # compressed 120× reads a 2h deadline as 2h, not the 1h59m59s of a few milliseconds' wait
            now = self.clock.now()
            conn = tx.conn
            if key is not None:
                open_key = f"{sop.id}:{key}"
                row = tx.first(_OPEN_RUN, {"_key": open_key})
                if row is not None:
                    open_id, repeats = row[0], row[1] + 1
                    tx.execute(_RUN_UPDATE, {"_run": open_id, "repeats": repeats, "last_seen_at": now})
                    tx.append("trigger_repeated", open_id, actor=initiator, trigger=trigger, repeats=repeats)
                    return StartResult(open_id, attached=True, repeats=repeats), Plan(), None
            text_hash = loaded.text_hash
            pinned = text_hash in self._pinned_texts
            if not pinned and tx.first(_SOP_VERSION, {"_hash": text_hash}) is None:
                conn.execute(_SOP_VERSION_INSERT, {"hash": text_hash, "sop_id": sop.id, "version": sop.version,
                                                   "text": loaded.text, "first_seen": now})
            run_id = new_run_id()
            deadline_at = now + scaled(sop.deadline, speed) if sop.deadline else None
            run = dict(
                id=run_id, sop_id=sop.id, sop_hash=text_hash, title=sop.title, sop_class=sop.class_,
                priority=sop.priority, status="running", initiator=initiator, trigger=dumps(trigger) if trigger else None,
                inputs=dumps(inputs), dedup_key=key, open_key=f"{sop.id}:{key}" if key else None, repeats=0,
                last_seen_at=now, speed=speed, started_at=now, deadline_at=deadline_at, flow_run_id=flow_run_id)
            conn.execute(_RUN_INSERT, run)  # first: a race on the open key fails here, before anything else
            fallbacks = {s.fallback for s in sop.steps if s.fallback}
            # the step rows and timers are built in memory and inserted at the end (see _write_new)
            view = new_view(run, [
                {"run_id": run_id, "step_id": s.id, "kind": s.kind, "state": "standby" if s.id in fallbacks else "pending",  # type: ignore[attr-defined]
                 "assignee": getattr(s, "assignee", None)} for s in sop.steps], sop)
            with tx.held():  # the transition's records in one statement
                tx.append("run_started", run_id, actor=initiator, at=now, sop=sop.id, sop_hash=text_hash,
                          version=sop.version, inputs=inputs, trigger=trigger, speed=speed, dedup_key=key,
                          deadline_at=deadline_at, priority=sop.priority)
                if deadline_at is not None:
                    self._arm(tx, view, "", "run_deadline", "", deadline_at)
                pages[:] = [Page("run_started", run_id, None, [sop.owner])]
                plan = self._advance(tx, view, pages)
                self._write_new(tx, view)
            self._queue(tx, pages)
        if not pinned:
            self.ledger.after_commit(lambda: self._pinned_texts.add(text_hash))
        log.info("event=run_started run=%s sop=%s speed=%g initiator=%s", run_id, sop.id, speed, initiator)
        return StartResult(run_id), plan, view

    # --- advancing ---------------------------------------------------------------------

    def advance(self, run_id: str) -> Plan:
        """Make every step whose needs are met ready (or skipped); finish the run when all are.

        Idempotent: any process may call it any time. Human steps are assigned and paged
        here, so the next person hears at once, without waiting for a flow run to start.
        """
        pages: list[Page] = []
        with self.ledger.transaction() as tx:
            plan = self._advance(tx, load_view(tx.conn, run_id), pages)
            self._queue(tx, pages)
        self._send(pages)
        return plan

    def _advance(self, tx: Tx, view: RunView, pages: list[Page]) -> Plan:
        if not view.is_open:
            return Plan(finished=True)
        changed = True
        while changed:
            changed = False
            for step in view.sop.steps:
                if view.state(step.id) == "pending" and self._try_activate(tx, view, step, pages):
                    changed = True  # the view's step rows are kept current in memory: no reload
        automated = [s.id for s in view.sop.steps if view.state(s.id) in ("ready", "running")]
        finished = all(view.state(s.id) in (*TERMINAL_STEP, "standby") for s in view.sop.steps)
        if finished:
            self._finish(tx, view, pages)
        return Plan(automated=automated, finished=finished)

    def _try_activate(self, tx: Tx, view: RunView, step: Any, pages: list[Page]) -> bool:
        deps = view.sop.dependencies(step)
        states = {d: view.state(d) for d in deps}
        if any(s not in TERMINAL_STEP for s in states.values()):
            return False  # still waiting on an upstream step
        blocked = [d for d, s in states.items() if not self._satisfied(view, d, s)]
        if blocked:
            reason = ", ".join(f"{d} {states[d]}" for d in blocked)
            self._set_step(tx, view, step.id, "blocked", reason=f"upstream: {reason}")
            return True
        for dep in deps:
            parent = view.sop.step(dep)
            if parent.branches() and parent.skips(step.id, view.result(dep)):
                self._set_step(tx, view, step.id, "skipped", reason=f"branch of {dep} not taken")
                return True
        # the template variables cost more than the rest of an activation: built only when read
        context = variables(view, self.site) if step.when else None
        if step.when:
            try:
                go = bool(evaluate(step.when, context))
            except Exception as exc:  # a template error at run time: fail the step, say why
                self._set_step(tx, view, step.id, "failed", reason=f"`when` could not be evaluated: {exc}")
                return True
            if not go:
                self._set_step(tx, view, step.id, "skipped", reason=f"when: {step.when} is false")
                return True
        # the kind decides: assigned (human), a timer (wait), evaluated (check), ready for its task (automated)
        KINDS[step.kind].activate(step, _Activation(self, tx, view, step, pages, self.clock.now(), context))
        return True

    @staticmethod
    def _satisfied(view: RunView, dep: str, state: str) -> bool:
        if state in ("done", "skipped"):
            return True
        fallback = view.sop.step(dep).fallback
        return state == "timed_out" and fallback is not None and view.state(fallback) == "done"

    def _assign(self, tx: Tx, view: RunView, step: HumanStep, now: datetime, pages: list[Page]) -> None:
        due_at = now + scaled(step.due, view.speed) if step.due else None
        person = self.person_for(step.assignee)
        self._update_step(tx, view, step.id, state="active", ready_at=now, due_at=due_at)
        tx.append("step_assigned", view.id, step.id, at=now, assignee=step.assignee, person=person, due_at=due_at)
        if due_at is not None:
            self._arm(tx, view, step.id, "due", "", due_at)
        first = next(levels(view.sop.ladder_for(step), step.due, limit=1), None)
        if first is not None:
            self._arm(tx, view, step.id, "ladder", first.key, now + scaled(first.offset, view.speed))
        pages.append(Page("assigned", view.id, step.id, [step.assignee]))

    def person_for(self, name: str) -> str:
        """The person who answers for a role (its primary) or the person named."""
        role = self.site.roles.get(name)
        return role.primary if role else name

    @staticmethod
    def _update_step(tx: Tx, view: RunView, step_id: str, **values: Any) -> None:
        """Write a step row's new values, and keep ``view`` (read in this transaction) current.

        A new run's step not inserted yet changes in memory only: ``_write_new`` inserts it as it ends up.
        """
        if step_id not in view.unwritten:
            tx.execute(_STEP_UPDATE, {"_run": view.id, "_step": step_id, **values})
        view.steps[step_id] = {**view.steps[step_id], **values}

    @staticmethod
    def _write_new(tx: Tx, view: RunView) -> None:
        """Insert a new run's step rows and timers as the transition left them, one statement each."""
        if view.unwritten:
            tx.executemany(_STEPS_INSERT, [view.steps[s] for s in view.steps if s in view.unwritten])
            view.unwritten = set()
        if view.unwritten_timers:
            tx.executemany(_TIMER_INSERT, view.unwritten_timers)
        view.unwritten_timers = None

    def _set_step(self, tx: Tx, view: RunView, step_id: str, state: str, *, reason: str | None = None,
                  result: dict[str, Any] | None = None, actor: str | None = None, note: str | None = None,
                  ready_at: datetime | None = None) -> None:
        now = self.clock.now()
        row = view.steps[step_id]
        met = None
        if row.get("due_at") is not None and state in ("done", "rejected"):
            met = now <= row["due_at"]
        values: dict[str, Any] = {"state": state, "finished_at": now, "deadline_met": met}
        if result is not None:
            values["result"] = dumps(result)
        if actor is not None:
            values["actor"] = actor
        if note is not None or reason is not None:
            values["note"] = note if note is not None else reason
        if ready_at is not None:
            values["ready_at"] = ready_at
        self._update_step(tx, view, step_id, **values)
        tx.append(f"step_{state}", view.id, step_id, actor=actor, reason=reason, result=result, note=note,
                  deadline_met=met)
        self._cancel_timers(tx, view, step_id)
        fallback = view.sop.step(step_id).fallback
        if state != "timed_out" and fallback and view.steps.get(fallback, {}).get("state") == "standby":
            # the step finished without timing out: its stand-in is not needed, and whatever waits on it may go
            self._set_step(tx, view, fallback, "skipped", reason=f"fallback of {step_id}, not needed")

    def _finish(self, tx: Tx, view: RunView, pages: list[Page]) -> None:
        for s in view.sop.steps:
            if view.state(s.id) == "standby":
                self._set_step(tx, view, s.id, "skipped", reason="fallback not needed")
        states = [view.state(s.id) for s in view.sop.steps]
        outcome = "failed" if "failed" in states else "rejected" if "rejected" in states else "done"
        now = self.clock.now()
        met = view.run["deadline_at"] is None or now <= view.run["deadline_at"]
        values = {"status": "finished", "outcome": outcome, "finished_at": now, "open_key": None, "nudge": False}
        tx.execute(_RUN_UPDATE, {"_run": view.id, **values})
        view.run.update(values)
        tx.append("run_finished", view.id, outcome=outcome, deadline_met=met)
        self._cancel_timers(tx, view, None)
        pages.append(Page("run_finished", view.id, None, [view.sop.owner]))
        log.info("event=run_finished run=%s outcome=%s deadline_met=%s", view.id, outcome, met)

    # --- timers (arming; firing lives in flows.engine.timers) ------------------------------------

    def _arm(self, tx: Tx, view: RunView, step_id: str, kind: str, level: str, due_at: datetime) -> None:
        """Arm a timer unless that level is armed already (a new run's: kept with it, see ``_write_new``)."""
        timer = {"run_id": view.id, "step_id": step_id, "kind": kind, "level": level, "due_at": due_at,
                 "armed_at": self.clock.now(), "cancelled_at": None}
        if view.unwritten_timers is not None:  # new in this transaction: nothing was armed before
            view.unwritten_timers.append(timer)
        elif not tx.first(_TIMER_ARMED, {"_run": view.id, "_step": step_id, "_kind": kind, "_level": level}):
            tx.execute(_TIMER_INSERT, timer)

    def _cancel_timers(self, tx: Tx, view: RunView, step_id: str | None) -> None:
        now = self.clock.now()
        if view.unwritten_timers is not None:
            # a new run's timers are all in memory (no row of it exists yet): cancelled there, written
            # cancelled, as a run's cancelled timers always are
            for timer in view.unwritten_timers:
                if (step_id is None or timer["step_id"] == step_id) and timer["cancelled_at"] is None:
                    timer["cancelled_at"] = now
        elif step_id is None:
            tx.execute(_CANCEL_RUN_TIMERS, {"_run": view.id, "cancelled_at": now})
        else:
            tx.execute(_CANCEL_STEP_TIMERS, {"_run": view.id, "_step": step_id, "cancelled_at": now})

    # --- reports from people ---------------------------------------------------------------

    def report(self, run_id: str, step_id: str, report: human.HumanReport, *, nudge: bool = True) -> str:
        """Take a person's report on a human step; returns the step's new state.

        Refuses (ReportRefused / StepNotActive / RunNotFound) without changing anything when
        the run, the step or the form values are wrong.
        """
        pages: list[Page] = []
        with self.ledger.transaction() as tx:
            view = load_view(tx.conn, run_id)
            run_id = view.id
            step = self._human_step(view, step_id)
            if isinstance(report.values, dict):
                report.values = human.coerce_values(step, report.values)
            approvals = view.approvals(step.id)
            human.check_report(step, report, initiator=view.run["initiator"], approvals=approvals, site=self.site)
            result = {**human.complete_values(step, report.values), "evidence": report.evidence}
            if step.approval is not None and report.outcome == "done":
                approvals = [*approvals, report.actor]
                tx.conn.execute(steps.update().where((steps.c.run_id == run_id) & (steps.c.step_id == step.id))
                                .values(approvals=json.dumps(approvals)))
                tx.append("approval", run_id, step.id, actor=report.actor, note=report.note, approvals=approvals,
                          needed=step.approval.count)
                result["approvers"] = approvals
                if len(approvals) < step.approval.count:
                    return "active"
            state = "done" if report.outcome == "done" else "rejected"
            escalated = tx.conn.execute(sa.select(sa.func.count()).select_from(timers).where(
                (timers.c.run_id == run_id) & (timers.c.step_id == step.id) & (timers.c.kind == "ladder")
                & timers.c.fired_at.is_not(None))).scalar_one()
            self._set_step(tx, view, step.id, state, result=result, actor=report.actor, note=report.note)
            if escalated:
                pages.append(Page("step_done", run_id, step.id, [view.sop.owner]))
            self._queue(tx, pages)
        self._send(pages)
        log.info("event=step_reported run=%s step=%s actor=%s outcome=%s", run_id, step_id, report.actor, state)
        self.advance(run_id)
        if nudge and self.launcher is not None:
            self.launcher.nudge(run_id)
        return state

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
        if state != "active":
            waiting = [s for s, r in view.steps.items() if r["state"] == "active" and isinstance(view.sop.step(s), HumanStep)]
            raise StepNotActive(f"step `{step_id}` is {state}, not waiting for a report "
                                f"(waiting now: {', '.join(waiting) or 'none'})")
        return step

    # --- automated steps (called from the Prefect tasks) ---------------------------------------

    def mark_running(self, run_id: str, step_id: str) -> bool:
        """Claim a ready automated step; False when it already finished (never run twice)."""
        with self.ledger.transaction() as tx:
            state = tx.conn.execute(sa.select(steps.c.state).where((steps.c.run_id == run_id) & (steps.c.step_id == step_id))).scalar_one()
            if state in TERMINAL_STEP:
                return False
            if state == "ready":
                tx.conn.execute(steps.update().where((steps.c.run_id == run_id) & (steps.c.step_id == step_id)).values(state="running"))
                tx.append("step_started", run_id, step_id)
            return True

    def complete(self, run_id: str, step_id: str, outputs: dict[str, Any], error: str | None = None) -> None:
        """Record the outcome of an automated step (done, or failed with the error)."""
        with self.ledger.transaction() as tx:
            view = load_view(tx.conn, run_id)
            if view.state(step_id) in TERMINAL_STEP:
                return
            self._set_step(tx, view, step_id, "failed" if error else "done", result=outputs, reason=error)

    # --- cancel ------------------------------------------------------------------------

    def cancel(self, run_id: str, reason: str, actor: str | None = None) -> RunView:
        """Stop a run: open steps cancelled, timers disarmed, people told, flow run cancelled."""
        if not reason or not reason.strip():
            raise InputRefused(["a reason is required to cancel a run"])
        with self.ledger.transaction() as tx:
            view = load_view(tx.conn, run_id)
            if not view.is_open:
                raise StepNotActive(f"run {view.id} is already {view.run['status']}")
            active = [s for s, r in view.steps.items() if r["state"] == "active"]
            now = self.clock.now()
            tx.conn.execute(steps.update().where((steps.c.run_id == view.id) & steps.c.state.not_in(TERMINAL_STEP))
                            .values(state="cancelled", finished_at=now))
            tx.conn.execute(runs.update().where(runs.c.id == view.id).values(
                status="cancelled", outcome=f"cancelled: {reason}", finished_at=now, open_key=None, nudge=False))
            tx.append("run_cancelled", view.id, actor=actor, reason=reason)
            self._cancel_timers(tx, view, None)
            targets = [view.sop.owner, *[view.sop.step(s).assignee for s in active  # type: ignore[attr-defined]
                                         if isinstance(view.sop.step(s), HumanStep)]]
            pages = [Page("run_cancelled", view.id, None, list(dict.fromkeys(targets)))]
            self._queue(tx, pages)
        self._send(pages)
        if self.launcher is not None:
            self.launcher.cancel(view.id)
        return view

    # --- the Prefect side's bookkeeping ------------------------------------------------------

    def run_for_flow_run(self, flow_run_id: str) -> str | None:
        """The run a Prefect flow run belongs to, if the ledger knows it."""
        with self.ledger.read() as conn:
            return conn.execute(sa.select(runs.c.id).where(runs.c.flow_run_id == flow_run_id)).scalar()

    def bind_flow_run(self, run_id: str, flow_run_id: str) -> None:
        """Remember which flow run executes a run (once)."""
        with self.ledger.transaction() as tx:
            current = tx.conn.execute(sa.select(runs.c.flow_run_id).where(runs.c.id == run_id)).scalar()
            if current != flow_run_id:
                tx.conn.execute(runs.update().where(runs.c.id == run_id).values(flow_run_id=flow_run_id))
                tx.append("flow_run_bound", run_id, flow_run_id=flow_run_id)

    def suspend_count(self, run_id: str) -> int:
        """How many times the run's flow run suspended (0 for an unknown run)."""
        with self.ledger.read() as conn:
            return conn.execute(sa.select(runs.c.suspends).where(runs.c.id == run_id)).scalar() or 0

    def begin_suspend(self, run_id: str) -> int:
        """Count a suspension of the run's flow run; the count keys its resume input."""
        with self.ledger.transaction() as tx:
            count = tx.conn.execute(sa.select(runs.c.suspends).where(runs.c.id == run_id)).scalar_one() + 1
            tx.conn.execute(runs.update().where(runs.c.id == run_id).values(suspends=count))
        return count

    def note(self, run_id: str, step_id: str | None, kind: str, actor: str | None = None, **data: Any) -> None:
        """Append a record that changes no state (a refused report, a failed attempt…)."""
        with self.ledger.transaction() as tx:
            tx.append(kind, run_id, step_id, actor=actor, **data)

    # --- reading ----------------------------------------------------------------------------

    def view(self, run_id: str) -> RunView:
        """A run as it stands now (RunNotFound when unknown)."""
        with self.ledger.read() as conn:
            return load_view(conn, run_id)

    def _queue(self, tx: Tx, pages: list[Page]) -> None:
        """Write a transition's pages to the outbox in its own transaction (see flows.engine.outbox)."""
        if self.pager is not None and pages:
            self.pager.queue(tx.conn, pages)

    def _send(self, pages: list[Page]) -> None:
        """After the commit: deliver the pages this process claimed (a pager process takes the rest)."""
        if self.pager is not None and pages:
            self.ledger.after_commit(lambda: self.pager.send_all(self, pages))  # type: ignore[union-attr]


class _Activation:
    """The engine's side of a step kind's ``activate`` (``flows.language.steps.base.Activation``): one step's turn."""

    __slots__ = ("_context", "_engine", "_pages", "_step", "_tx", "_view", "now", "speed")

    def __init__(self, engine: Engine, tx: Tx, view: RunView, step: Any, pages: list[Page], now: datetime,
                 context: dict[str, Any] | None):
        self._engine, self._tx, self._view, self._step, self._pages = engine, tx, view, step, pages
        self.now, self.speed, self._context = now, view.speed, context

    def variables(self) -> dict[str, Any]:
        if self._context is None:
            self._context = variables(self._view, self._engine.site)
        return self._context

    def assign(self) -> None:
        self._engine._assign(self._tx, self._view, self._step, self.now, self._pages)

    def wait_until(self, until: datetime) -> None:
        engine, tx, view, step_id = self._engine, self._tx, self._view, self._step.id
        engine._update_step(tx, view, step_id, state="active", ready_at=self.now, due_at=until)
        tx.append("step_waiting", view.id, step_id, until=until)
        engine._arm(tx, view, step_id, "wait", "", until)

    def finish(self, outputs: dict[str, Any]) -> None:
        self._engine._set_step(self._tx, self._view, self._step.id, "done", result=outputs, ready_at=self.now)

    def fail(self, reason: str) -> None:
        self._engine._set_step(self._tx, self._view, self._step.id, "failed", reason=reason)

    def ready(self) -> None:
        self._engine._update_step(self._tx, self._view, self._step.id, state="ready", ready_at=self.now)
        self._tx.append("step_ready", self._view.id, self._step.id, step_kind=self._step.kind)


__all__ = ["Engine", "InputRefused", "Plan", "RunNotFound", "StartResult", "StepNotActive", "check_inputs"]
