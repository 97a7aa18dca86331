"""The run store: the projections of runs (runs, steps, timers) behind domain methods.

Every SQL statement the engine sends is here, built once (docs/benchmarks.md, "Statements
built once"), over one ledger transaction (:class:`~flows.ledger.Tx`). The engine decides
transitions and calls these methods; it never knows whether a statement went through
SQLAlchemy or straight to SQLite's driver (the same rows, the same errors), nor that a new
run is written in one go: the store keeps a run created in this transaction in memory (its
step rows, its timers, its records) and inserts each kind in one statement when the
transaction's work is done (:meth:`RunStore.flush`). A run's view (:class:`RunView`) is
the same either way.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.engine.links import Claim, LinkRefused
from flows.engine.view import RunNotFound, RunView
from flows.language.library import pinned_sop
from flows.language.spec import Sop
from flows.ledger import Ledger, Tx, aware, selected, utc
from flows.ledger.schema import holds, link_uses, records, runs, sop_versions, steps, timers
from flows.ledger.vocabulary import TERMINAL_STEP, RecordKind, RunStatus, StepState, TimerKind

_B = sa.bindparam
_RUN = sa.select(runs).where(runs.c.id == _B("_run"))
_STEPS = sa.select(steps).where(steps.c.run_id == _B("_run"))
_PINNED_TEXT = sa.select(sop_versions.c.text).where(sop_versions.c.hash == _B("_hash"))
#: the most ``timers.late_ms`` holds (a 32-bit integer on PostgreSQL, ~24.8 days): a timer that fires later
#: keeps that much there; its record (``escalation``, ``run_overdue``…) carries the exact lateness
LATE_MS_KEPT = 2**31 - 1
#: the longest outcome ``runs.outcome`` holds; a cancel's reason is kept whole in its ``run_cancelled`` record
OUTCOME_CHARS = 200
_OPEN_RUN = sa.select(runs.c.id, runs.c.repeats).where(runs.c.open_key == _B("_key"))
# PostgreSQL, per run: the open run found, held and its repeat counted in one statement; in a batch the run is held
# NOWAIT (a run another writer holds is an error at once, not a wait: see Ledger.batch)
_COUNTED = {"repeats": runs.c.repeats + _B("_copies"), "last_seen_at": _B("_now")}
_ATTACH = {
    "": runs.update().where(runs.c.open_key == _B("_key")).values(_COUNTED).returning(runs.c.id, runs.c.repeats),
    " NOWAIT": runs.update().where(runs.c.id == _OPEN_RUN.with_only_columns(runs.c.id).with_for_update(nowait=True)
                                   .scalar_subquery()).values(_COUNTED).returning(runs.c.id, runs.c.repeats),
}
_RUN_UPDATE = runs.update().where(runs.c.id == _B("_run"))  # SET columns: the other parameters
_STEP_UPDATE = steps.update().where((steps.c.run_id == _B("_run")) & (steps.c.step_id == _B("_step")))
_STEP_STATE = sa.select(steps.c.state).where((steps.c.run_id == _B("_run")) & (steps.c.step_id == _B("_step")))
_SOP_VERSION = sa.select(sop_versions.c.hash).where(sop_versions.c.hash == _B("_hash"))
_TIMER_ARMED = sa.select(timers.c.id).where((timers.c.run_id == _B("_run")) & (timers.c.step_id == _B("_step"))
                                            & (timers.c.kind == _B("_kind")) & (timers.c.level == _B("_level")))
_ARMED = timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None)
_TIMERS_OPEN = (timers.c.run_id == _B("_run")) & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None)
_CANCEL_RUN_TIMERS = timers.update().where(_TIMERS_OPEN)
_CANCEL_STEP_TIMERS = timers.update().where(_TIMERS_OPEN & (timers.c.step_id == _B("_step")))
_PAGED_ABOUT = sa.select(records.c.kind, records.c.data).where(
    (records.c.run_id == _B("_run")) & (records.c.step_id == _B("_step"))
    & records.c.kind.in_([RecordKind.ESCALATION, RecordKind.HELP_ASKED])).order_by(records.c.seq)
_TIMER = sa.select(timers).where(timers.c.id == _B("_timer"))
_CLAIM_TIMER = timers.update().where((timers.c.id == _B("_timer")) & timers.c.fired_at.is_(None)
                                     & timers.c.cancelled_at.is_(None))
_FOLLOW_UP_RUN = sa.select(runs.c.id).where((runs.c.parent_run_id == _B("_parent"))
                                             & (runs.c.follow_up == _B("_follow_up")))
_LINEAGE = sa.select(runs.c.sop_id, runs.c.parent_run_id).where(runs.c.id == _B("_run"))
_RUN_INSERT = runs.insert()
_STEPS_INSERT = steps.insert()
_TIMER_INSERT = timers.insert()
_SOP_VERSION_INSERT = sop_versions.insert()

#: what the database fills in for the columns a new run's insert leaves out; a test compares
#: :meth:`RunStore.new_run` with :func:`load_view` of the written run, so the two cannot drift apart
_RUN_DEFAULTS: dict[str, Any] = {"finished_at": None, "outcome": None, "suspends": 0, "nudge": False,
                                 "parent_run_id": None, "follow_up": None}
_STEP_DEFAULTS: dict[str, Any] = {"ready_at": None, "due_at": None, "finished_at": None, "actor": None, "note": None,
                                  "result": None, "approvals": None, "deadline_met": None,
                                  "claimed_by": None, "claimed_at": None, "held_at": None}
#: pinned SOPs by text hash (a hash names one text forever, so entries never go stale)
_pinned: dict[str, Sop] = {}


#: timers of one instant: a step's deadline after the rest (``RunStore.due_timers``)
_DEADLINE_LAST = sa.case((timers.c.kind == TimerKind.DUE, 1), else_=0)
#: the shortest prefix that names a run: `sop cancel 7` must not take whichever run's id begins with 7
MIN_PREFIX = 4


def resolve_run_id(conn: Connection, run_id: str) -> str:
    """A full run id from an id or a unique prefix of :data:`MIN_PREFIX` characters or more; RunNotFound otherwise."""
    if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first():
        return run_id
    if len(run_id) < MIN_PREFIX:
        raise RunNotFound(f"`{run_id}` is too short to name a run: write at least {MIN_PREFIX} characters of its id "
                          "(see `sop status` for open runs)")
    # a prefix, not a pattern: `%` and `_` in what a user typed match themselves
    found = [r.id for r in conn.execute(sa.select(runs.c.id).where(runs.c.id.startswith(run_id, autoescape=True))
                                        .limit(3))] if run_id else []
    if len(found) == 1:
        return found[0]
    if found:
        raise RunNotFound(f"run id `{run_id}` is ambiguous (matches {', '.join(found)}…)")
    raise RunNotFound(f"no run `{run_id}` (see `sop status` for open runs)")


def load_view(conn: Connection, run_id: str) -> RunView:
    """Load a run (by id or unique prefix), its steps and its pinned SOP; RunNotFound when there is none. (The run
    and its steps in one go: on PostgreSQL one round trip, ``flows.ledger.selected``.)"""
    found, step_rows = selected(conn, (_RUN, {"_run": run_id}), (_STEPS, {"_run": run_id}))
    if not found:  # not a full id: a unique prefix, or nothing
        run_id = resolve_run_id(conn, run_id)
        found, step_rows = selected(conn, (_RUN, {"_run": run_id}), (_STEPS, {"_run": run_id}))
        assert found
    run = found[0]
    sop = _pinned.get(run["sop_hash"])
    if sop is None:  # pinned texts never change: read and parse each one once per process
        text = conn.execute(_PINNED_TEXT, {"_hash": run["sop_hash"]}).scalar_one()
        sop = _pinned[run["sop_hash"]] = pinned_sop(run["sop_hash"], text)
    return RunView(run=run, steps={row["step_id"]: row for row in step_rows}, sop=sop)


@dataclass
class _NewRun:
    """A run inserted in this transaction whose step rows and timers are not written yet."""

    view: RunView
    steps: set[str]
    timers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TimerClaim:
    """A timer this transaction claimed (fired_at set): what it was for, and how late."""

    id: int
    run_id: str
    step_id: str
    kind: str
    level: str
    due_at: datetime
    late_ms: int


class RunStore:
    """The projections of runs within one ledger transaction (see the module's docstring)."""

    def __init__(self, tx: Tx):
        self.tx = tx
        self.conn = tx.conn
        self.clock = tx.clock
        self._new: dict[str, _NewRun] = {}
        self._holding = ExitStack()

    # --- reading ---------------------------------------------------------------------------

    def load(self, run_id: str) -> RunView:
        """The run (by id or unique prefix) as this transaction sees it, held; RunNotFound when there is none."""
        if self.tx.per_run is None or run_id in self._new:
            return load_view(self.conn, run_id)
        run_id = resolve_run_id(self.conn, run_id)
        self.tx.hold_run(run_id)
        return load_view(self.conn, run_id)

    def attach(self, open_key: str, copies: int, now: datetime, actor: str | None,
               data: dict[str, Any]) -> tuple[str, int] | None:
        """The open run holding this dedup key (held), ``copies`` more repeats counted on it, seen ``now``, and its
        ``trigger_repeated`` record (``data`` and the repeats so far; by ``actor``, at ``now``): the run's id and
        repeats; None (nothing written) when no run holds the key."""
        kind = RecordKind.TRIGGER_REPEATED
        if self.tx.per_run is not None:  # PostgreSQL: one statement finds, holds, counts and records
            row = self.tx.hold_and_append(_ATTACH[self.tx.per_run], {"_key": open_key, "_copies": copies, "_now": now},
                                          kind, actor, now, data, "repeats")
            return None if row is None else (row[0], row[1])
        found = self.tx.first(_OPEN_RUN, {"_key": open_key})  # one writer at a time: SQLite, or an exclusive write
        if found is None:
            return None
        repeats = found[1] + copies
        self.count_repeat(found[0], repeats, now)
        self.record(kind, found[0], actor=actor, at=now, **{**data, "repeats": repeats})
        return found[0], repeats

    @staticmethod
    def attach_alone(ledger: Ledger, open_key: str, copies: int, now: datetime, actor: str | None,
                     data: dict[str, Any]) -> tuple[str, int] | None:
        """:meth:`attach`, as a transaction of its own in one round trip (PostgreSQL, outside a batch:
        :meth:`Ledger.attaches_alone`)."""
        return ledger.attach(open_key, copies, now, RecordKind.TRIGGER_REPEATED, actor, data)

    def _hold(self, run_id: str) -> None:
        if run_id not in self._new:
            self.tx.hold_run(run_id)

    def is_pinned(self, text_hash: str) -> bool:
        """The ledger holds this SOP text already."""
        return self.tx.first(_SOP_VERSION, {"_hash": text_hash}) is not None

    def step_state(self, run_id: str, step_id: str) -> str:
        """A step's state as stored (NoResultFound for an unknown step)."""
        self._hold(run_id)
        return self.conn.execute(_STEP_STATE, {"_run": run_id, "_step": step_id}).scalar_one()

    def paged_about(self, run_id: str, step_id: str) -> list[str]:
        """The targets a step's escalations paged (ladder words and names, in order; ``lead`` for a help asked with
        no level left): whom its end is told to."""
        out: list[str] = []
        for kind, data in self.conn.execute(_PAGED_ABOUT, {"_run": run_id, "_step": step_id}):
            said = json.loads(data or "{}")
            wanted = said.get("notify") or [] if kind == RecordKind.ESCALATION else \
                ([] if said.get("level") else ["lead"])
            out += [target for target in wanted if target not in out]
        return out

    def follow_up_run(self, parent_id: str, follow_up: str) -> str | None:
        """The run that follow-up ``follow_up`` of ``parent_id``'s end started, if one did (the fence)."""
        row = self.tx.first(_FOLLOW_UP_RUN, {"_parent": parent_id, "_follow_up": follow_up})
        return None if row is None else row[0]

    def lineage(self, run_id: str, limit: int = 50) -> list[str]:
        """The SOP ids of a run and of the runs whose ends started it, nearest first (at most ``limit``)."""
        out: list[str] = []
        current: str | None = run_id
        while current is not None and len(out) < limit:
            row = self.tx.first(_LINEAGE, {"_run": current})
            if row is None:
                break
            out.append(row[0])
            current = row[1]
        return out

    def run_value(self, run_id: str, column: str) -> Any:
        """One column of a run's row (None for an unknown run)."""
        self._hold(run_id)
        return self.conn.execute(sa.select(runs.c[column]).where(runs.c.id == run_id)).scalar()

    # --- reading outside a transaction --------------------------------------------------------

    @staticmethod
    def open_run_of(conn: Connection, open_key: str) -> str | None:
        """The open run holding this dedup key (on a read connection)."""
        return conn.execute(sa.select(runs.c.id).where(runs.c.open_key == open_key)).scalar()

    @staticmethod
    def run_of_flow_run(conn: Connection, flow_run_id: str) -> str | None:
        """The run a Prefect flow run executes, if the ledger knows it."""
        return conn.execute(sa.select(runs.c.id).where(runs.c.flow_run_id == flow_run_id)).scalar()

    @staticmethod
    def suspends_of(conn: Connection, run_id: str) -> int:
        """How many times a run's flow run suspended (0 for an unknown run)."""
        return conn.execute(sa.select(runs.c.suspends).where(runs.c.id == run_id)).scalar() or 0

    @staticmethod
    def attempts(conn: Connection, run_id: str, step_id: str, kind: str) -> list[dict[str, Any]]:
        """The data of the automated step's ``kind`` records (``step_attempt_failed``, ``step_attempt_started``) since
        it was last made ready (a rework round readies it again), oldest first: the attempts already made or begun,
        whichever executor made them."""
        mine = (records.c.run_id == run_id) & (records.c.step_id == step_id)
        ready = sa.select(sa.func.max(records.c.seq)).where(mine & (records.c.kind == RecordKind.STEP_READY))
        rows = conn.execute(sa.select(records.c.data).where(
            mine & (records.c.kind == kind)
            & (records.c.seq > sa.func.coalesce(ready.scalar_subquery(), 0))).order_by(records.c.seq))
        return [json.loads(data) for data in rows.scalars()]

    @staticmethod
    def run_row(conn: Connection, run_id: str) -> Any:
        """A run's row as stored (None for an unknown run)."""
        return conn.execute(_RUN, {"_run": run_id}).first()

    @staticmethod
    def flow_run_of(conn: Connection, run_id: str) -> str | None:
        """The flow run that executes a run (None: not launched, or unknown)."""
        return conn.execute(sa.select(runs.c.flow_run_id).where(runs.c.id == run_id)).scalar()

    @staticmethod
    def open_flow_runs(conn: Connection) -> dict[str, str]:
        """flow run id → run id, for every open run bound to a flow run."""
        return {r.flow_run_id: r.id for r in conn.execute(sa.select(runs.c.id, runs.c.flow_run_id).where(
            (runs.c.status == RunStatus.RUNNING) & runs.c.flow_run_id.is_not(None)))}

    @staticmethod
    def has_automated_work(conn: Connection, run_id: str) -> bool:
        """A step of the run is ready or running for its flow run (an automated step); False when only people
        (or timers) have something to do now."""
        return conn.execute(sa.select(steps.c.step_id).where(
            (steps.c.run_id == run_id) & steps.c.state.in_([StepState.READY, StepState.RUNNING])).limit(1)).first() \
            is not None

    @staticmethod
    def nudged(conn: Connection) -> list[str]:
        """Runs flagged for a resume of their flow run."""
        return [r.id for r in conn.execute(sa.select(runs.c.id).where(runs.c.nudge.is_(True)))]

    @staticmethod
    def unlaunched(conn: Connection, started_before: datetime) -> list[str]:
        """Open runs started before this instant that have no flow run (their launch failed)."""
        return [r.id for r in conn.execute(sa.select(runs.c.id).where(
            (runs.c.status == RunStatus.RUNNING) & runs.c.flow_run_id.is_(None) & (runs.c.started_at < started_before)))]

    @staticmethod
    def launches_given_up(conn: Connection, run_ids: list[str]) -> dict[str, str]:
        """run id → why its automated steps cannot start, for those of ``run_ids`` given up on."""
        if not run_ids:
            return {}
        rows = conn.execute(sa.select(records.c.run_id, records.c.data).where(
            records.c.run_id.in_(run_ids) & (records.c.kind == RecordKind.LAUNCH_GIVEN_UP)).order_by(records.c.seq))
        return {r.run_id: json.loads(r.data).get("reason", "") for r in rows}

    @staticmethod
    def flow_run_history(conn: Connection, run_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        """A run's status, and the data of its flow_run_created / flow_run_given_up records in order."""
        status = conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).scalar()
        kinds = [RecordKind.FLOW_RUN_CREATED, RecordKind.FLOW_RUN_GIVEN_UP]
        history = [json.loads(d) for d in conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == run_id) & records.c.kind.in_(kinds)).order_by(records.c.seq)).scalars()]
        return status, history

    @staticmethod
    def due_timers(conn: Connection, now: datetime, limit: int) -> list[Any]:
        """Armed timers whose instant has come, oldest first (at most ``limit``); of one instant, a step's deadline
        last: a ladder rung at 100% of a step its ``on_timeout`` ends reaches its people before the step closes
        (and its timers with it)."""
        return list(conn.execute(sa.select(timers).where(_ARMED & (timers.c.due_at <= now))
                                 .order_by(timers.c.due_at, _DEADLINE_LAST, timers.c.id).limit(limit)))

    @staticmethod
    def next_timer_instant(conn: Connection) -> datetime | None:
        """When the next armed timer is due (None: nothing armed)."""
        return utc(conn.execute(sa.select(sa.func.min(timers.c.due_at)).where(_ARMED)).scalar())

    @staticmethod
    def timers_due_before(conn: Connection, instant: datetime) -> list[int]:
        """The ids of armed timers due before ``instant`` (still unfired)."""
        return [r.id for r in conn.execute(sa.select(timers.c.id).where(_ARMED & (timers.c.due_at < instant)))]

    def set_nudge(self, run_id: str, flagged: bool) -> None:
        """Flag (or clear) a run for a resume of its flow run (a finished run's too: resumed, its flow run ends
        as the run did)."""
        self.conn.execute(runs.update().where(runs.c.id == run_id).values(nudge=flagged))

    # --- the records -----------------------------------------------------------------------

    def record(self, kind: str, run_id: str | None = None, step_id: str | None = None, *, actor: str | None = None,
               at: datetime | None = None, **data: Any) -> int:
        """Append a record to the chain; returns its seq."""
        return self.tx.append(kind, run_id, step_id, actor=actor, at=at, **data)

    # --- runs ------------------------------------------------------------------------------

    def pin(self, text_hash: str, sop_id: str, version: str, text: str, now: datetime) -> None:
        """Keep an SOP text (once per hash)."""
        self.conn.execute(_SOP_VERSION_INSERT, {"hash": text_hash, "sop_id": sop_id, "version": version,
                                                "text": text, "first_seen": now})

    def new_run(self, run: dict[str, Any], step_rows: list[dict[str, Any]], sop: Sop) -> RunView:
        """Insert a run and return its view, its steps as ``step_rows`` say (written at :meth:`flush`).

        The run's row goes in first: a race on its ``open_key`` raises IntegrityError here,
        before anything else is written. From here to :meth:`flush` the records appended are
        held and inserted together; nothing in between may read ``records``.
        """
        self.tx.execute(_RUN_INSERT, run)
        if not self._new:
            self._holding.enter_context(self.tx.held())
        row = aware({**_RUN_DEFAULTS, **run})
        rows = {s["step_id"]: {**_STEP_DEFAULTS, **s} for s in step_rows}
        view = RunView(run=row, steps=rows, sop=sop)
        self._new[run["id"]] = _NewRun(view, set(rows))
        return view

    def update_run(self, view: RunView, **values: Any) -> None:
        """Write a run row's new values, and keep ``view`` current."""
        self.tx.execute(_RUN_UPDATE, {"_run": view.id, **values})
        view.run.update(values)

    def count_repeat(self, run_id: str, repeats: int, now: datetime) -> None:
        """A trigger repeated on an open run."""
        self.tx.execute(_RUN_UPDATE, {"_run": run_id, "repeats": repeats, "last_seen_at": now})

    def set_run(self, run_id: str, **values: Any) -> None:
        """Write values of a run's row without a view."""
        self._hold(run_id)
        self.conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    # --- steps -----------------------------------------------------------------------------

    def update_step(self, view: RunView, step_id: str, **values: Any) -> None:
        """Write a step row's new values, and keep ``view`` current."""
        new = self._new.get(view.id)
        if new is None or step_id not in new.steps:
            self.tx.execute(_STEP_UPDATE, {"_run": view.id, "_step": step_id, **values})
        view.steps[step_id] = {**view.steps[step_id], **values}

    def use_link(self, claim: Claim, *, action: str, now: datetime) -> None:
        """A personal link acts once: its nonce is written now; LinkRefused ``used`` when it already was.

        Looked up first, not left to the primary key, so the transaction stays usable for the refusal's record.
        """
        if self.conn.execute(sa.select(link_uses.c.action).where(link_uses.c.nonce == claim.nonce)).first():
            raise LinkRefused("used", "this link was already used to act on this step: open the step's page "
                                      "to see what happened")
        self.conn.execute(link_uses.insert().values(nonce=claim.nonce, person=claim.person, run_id=claim.run_id,
                                                    step_id=claim.step_id, action=action, used_at=now))

    @staticmethod
    def link_used(conn: Connection, nonce: str) -> str | None:
        """What a personal link was used for (None: not yet)."""
        return conn.execute(sa.select(link_uses.c.action).where(link_uses.c.nonce == nonce)).scalar()

    def claim_step(self, view: RunView, step_id: str, person: str, now: datetime) -> None:
        """A member of the step's role holds it now."""
        self.update_step(view, step_id, claimed_by=person, claimed_at=now)

    def set_approvals(self, run_id: str, step_id: str, approvals: list[str]) -> None:
        """The approvers of a four-eyes step so far."""
        self.conn.execute(steps.update().where((steps.c.run_id == run_id) & (steps.c.step_id == step_id))
                          .values(approvals=json.dumps(approvals)))

    def mark_running(self, run_id: str, step_id: str) -> None:
        """A ready automated step is executing."""
        self.conn.execute(steps.update().where((steps.c.run_id == run_id) & (steps.c.step_id == step_id))
                          .values(state=StepState.RUNNING))


    def cancel_open_steps(self, view: RunView, now: datetime) -> None:
        """Every step not finished is cancelled."""
        self.conn.execute(steps.update().where((steps.c.run_id == view.id) & steps.c.state.not_in(TERMINAL_STEP))
                          .values(state=StepState.CANCELLED, finished_at=now))

    # --- timers ----------------------------------------------------------------------------

    def arm(self, view: RunView, step_id: str, kind: str, level: str, due_at: datetime) -> None:
        """Arm a timer unless that level is armed already."""
        timer = {"run_id": view.id, "step_id": step_id, "kind": kind, "level": level, "due_at": due_at,
                 "armed_at": self.clock.now(), "cancelled_at": None}
        new = self._new.get(view.id)
        if new is not None:  # new in this transaction: nothing was armed before
            new.timers.append(timer)
        elif not self.tx.first(_TIMER_ARMED, {"_run": view.id, "_step": step_id, "_kind": kind, "_level": level}):
            self.tx.execute(_TIMER_INSERT, timer)

    def cancel_timers(self, view: RunView, step_id: str | None) -> None:
        """Disarm the open timers of a step, or of the whole run (``step_id`` None)."""
        now = self.clock.now()
        new = self._new.get(view.id)
        if new is not None:
            # cancelled in memory, written cancelled, as a run's cancelled timers always are
            for timer in new.timers:
                if (step_id is None or timer["step_id"] == step_id) and timer["cancelled_at"] is None:
                    timer["cancelled_at"] = now
        elif step_id is None:
            self.tx.execute(_CANCEL_RUN_TIMERS, {"_run": view.id, "cancelled_at": now})
        else:
            self.tx.execute(_CANCEL_STEP_TIMERS, {"_run": view.id, "_step": step_id, "cancelled_at": now})

    def postpone_run_timers(self, view: RunView, kinds: tuple[str, ...], by: timedelta) -> datetime | None:
        """Move the run's armed timers of ``kinds`` (run-level: no step) later by ``by``; the first new instant."""
        armed = _ARMED & (timers.c.run_id == view.id) & (timers.c.step_id == "") & timers.c.kind.in_(kinds)
        rows = list(self.conn.execute(sa.select(timers.c.id, timers.c.due_at).where(armed)))
        for row in rows:
            self.conn.execute(timers.update().where(timers.c.id == row.id).values(due_at=utc(row.due_at) + by))
        return min((utc(r.due_at) + by for r in rows), default=None)  # type: ignore[operator]

    def move_timer(self, timer_id: int, due_at: datetime) -> None:
        """An armed timer fires at ``due_at`` instead (a hand-over's grace to a step's ladder)."""
        self.conn.execute(timers.update().where(timers.c.id == timer_id).values(due_at=due_at))

    def ladder_graces(self, run_id: str, step_id: str, since: datetime | None) -> list[tuple[datetime, datetime]]:
        """The moves hand-overs of a step since ``since`` (its ready instant this round) gave its ladder, oldest
        first: each from the armed level's old instant to its new one (``RunChange.ladder_grace``)."""
        where = (records.c.run_id == run_id) & (records.c.step_id == step_id) \
            & (records.c.kind == RecordKind.STEP_HANDED_OVER)
        if since is not None:
            where &= records.c.at >= since
        out = []
        for data in self.conn.execute(sa.select(records.c.data).where(where).order_by(records.c.seq)).scalars():
            said = json.loads(data or "{}")
            if said.get("ladder_from") and said.get("ladder_to"):
                out.append((utc(datetime.fromisoformat(said["ladder_from"])),
                            utc(datetime.fromisoformat(said["ladder_to"]))))
        return out  # type: ignore[return-value]

    def last_record_at(self, run_id: str, kind: str, step_id: str | None = None) -> datetime | None:
        """When the run's (or its step's) newest record of ``kind`` was written (None: never)."""
        where = (records.c.run_id == run_id) & (records.c.kind == kind)
        if step_id is not None:
            where &= records.c.step_id == step_id
        return utc(self.conn.execute(sa.select(sa.func.max(records.c.at)).where(where)).scalar())

    def asks_stopped(self, run_id: str) -> bool:
        """The run's status asks stopped (``status_asks_stopped``) and no update came since."""
        stopped = self.last_record_at(run_id, RecordKind.STATUS_ASKS_STOPPED)
        updated = self.last_record_at(run_id, RecordKind.STATUS_UPDATE)
        return stopped is not None and (updated is None or updated < stopped)

    def count_records_since(self, run_id: str, kind: str, since: datetime | None) -> int:
        """How many records of ``kind`` the run has after ``since`` (all of them when None)."""
        where = (records.c.run_id == run_id) & (records.c.kind == kind)
        if since is not None:
            where &= records.c.at > since
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(records).where(where)).scalar_one())

    def armed_ladder(self, run_id: str, step_id: str) -> Any:
        """The step's next armed ladder level (its timer row), or None."""
        return self.conn.execute(sa.select(timers).where(_ARMED & (timers.c.run_id == run_id)
                                                         & (timers.c.step_id == step_id)
                                                         & (timers.c.kind == TimerKind.LADDER))
                                 .order_by(timers.c.due_at).limit(1)).first()

    def claim_timer(self, timer_id: int, now: datetime, by: str) -> TimerClaim | None:
        """Claim an armed timer for firing (fenced: one claimant wins); None when it is gone, fired or cancelled."""
        row = self.conn.execute(_TIMER, {"_timer": timer_id}).first()
        if row is None or row.fired_at is not None or row.cancelled_at is not None:
            return None
        # the run before its timer's row: the order every change of the run takes its locks in (the engine holds
        # the run, then cancels its timers); the other order deadlocked on PostgreSQL
        self._hold(row.run_id)
        due_at = utc(row.due_at)
        late_ms = max(0, int((now - due_at).total_seconds() * 1000))  # type: ignore[operator]
        claimed = self.conn.execute(_CLAIM_TIMER, {"_timer": timer_id, "fired_at": now, "fired_by": by,
                                                   "late_ms": min(late_ms, LATE_MS_KEPT)}).rowcount
        if claimed != 1:
            return None
        return TimerClaim(row.id, row.run_id, row.step_id, row.kind, row.level, due_at, late_ms)  # type: ignore[arg-type]

    # --- holds (flows/engine/holds.py) ---------------------------------------------------------

    def is_new(self, run_id: str) -> bool:
        """The run was created in this transaction (nothing of it is written yet)."""
        return run_id in self._new

    def open_hold(self, run_id: str, step_id: str) -> Any:
        """The step's hold that has not ended (its row), or None."""
        return self.conn.execute(sa.select(holds).where((holds.c.run_id == run_id) & (holds.c.step_id == step_id)
                                                        & holds.c.released_at.is_(None))).first()

    def step_hold(self, run_id: str, step_id: str) -> tuple[Any, Any]:
        """The step's hold that has not ended (or None), and its run's own hold when that is what placed it (a
        step's hold written after the run's is the run's: while the run is held, a step is held only by it)."""
        held = self.open_hold(run_id, step_id)
        run_held = self.open_hold(run_id, "") if held is not None else None
        return held, run_held if run_held is not None and held.id > run_held.id else None

    def holds_of(self, run_id: str, step_id: str) -> int:
        """How many holds a step had (ended or not)."""
        return self.conn.execute(sa.select(sa.func.count()).select_from(holds).where(
            (holds.c.run_id == run_id) & (holds.c.step_id == step_id))).scalar_one()

    def ended_holds(self, run_id: str, step_id: str) -> list[tuple[datetime, datetime]]:
        """(held at, released at) of a step's holds that ended, oldest first."""
        rows = self.conn.execute(sa.select(holds.c.held_at, holds.c.released_at).where(
            (holds.c.run_id == run_id) & (holds.c.step_id == step_id) & holds.c.released_at.is_not(None))
            .order_by(holds.c.number))
        return [(utc(r.held_at), utc(r.released_at)) for r in rows]  # type: ignore[misc]

    def stop_step_timers(self, view: RunView, step_id: str, now: datetime,
                         kinds: tuple[str, ...] = (TimerKind.DUE, TimerKind.LADDER)) -> list[int]:
        """A hold stops a step's armed timers of ``kinds`` (its due and ladder; a run's own: ``step_id`` "" and
        its deadline and cadence kinds): cancelled now, their ids returned."""
        rows = [r.id for r in self.conn.execute(sa.select(timers.c.id).where(
            _ARMED & (timers.c.run_id == view.id) & (timers.c.step_id == step_id) & timers.c.kind.in_(kinds)))]
        if rows:
            self.conn.execute(timers.update().where(timers.c.id.in_(rows)).values(cancelled_at=now))
        return rows

    def restart_timers(self, timer_ids: list[int], later: Any) -> dict[int, datetime]:
        """Timers a hold stopped run again, each at ``later(its instant, its kind)``; returns id → new instant."""
        moved: dict[int, datetime] = {}
        for row in self.conn.execute(sa.select(timers.c.id, timers.c.kind, timers.c.due_at, timers.c.fired_at).where(
                timers.c.id.in_(timer_ids))):
            if row.fired_at is not None:
                continue
            moved[row.id] = later(utc(row.due_at), row.kind)
            self.conn.execute(timers.update().where(timers.c.id == row.id).values(cancelled_at=None,
                                                                                   due_at=moved[row.id]))
        return moved

    def holds_under(self, run_id: str, run_hold_id: int) -> list[Any]:
        """The open step holds a run's hold placed (written after it: while it is on, a step is held only by it)."""
        return list(self.conn.execute(sa.select(holds).where(
            (holds.c.run_id == run_id) & (holds.c.step_id != "") & (holds.c.id > run_hold_id)
            & holds.c.released_at.is_(None)).order_by(holds.c.id)))

    def cancel_step_timers_of(self, view: RunView, step_id: str, kind: str) -> None:
        """Disarm a step's armed timers of one kind (a released hold's maximum)."""
        self.conn.execute(timers.update().where(_ARMED & (timers.c.run_id == view.id) & (timers.c.step_id == step_id)
                                                & (timers.c.kind == kind)).values(cancelled_at=self.clock.now()))

    def start_hold(self, **values: Any) -> int:
        """Write a new hold; its id."""
        return self.conn.execute(holds.insert().values(**values)).inserted_primary_key[0]

    def end_hold(self, hold_id: int, **values: Any) -> None:
        """A hold ends (released_at, by, via, ended)."""
        self.conn.execute(holds.update().where(holds.c.id == hold_id).values(**values))

    @staticmethod
    def hold_rows(conn: Connection, run_id: str) -> list[Any]:
        """A run's holds (every step's), oldest first."""
        return list(conn.execute(sa.select(holds).where(holds.c.run_id == run_id).order_by(holds.c.id)))

    # --- the end of the transaction's work ---------------------------------------------------

    def unwritten(self) -> int:
        """Step rows and timers kept in memory, not inserted yet."""
        return sum(len(n.steps) + len(n.timers) for n in self._new.values())

    def flush(self) -> None:
        """Insert the new runs' step rows and timers as their transitions left them, then their records."""
        if not self._new:
            return
        step_rows = [new.view.steps[s] for new in self._new.values() for s in new.view.steps if s in new.steps]
        self.tx.defer(_STEPS_INSERT, step_rows)
        self.tx.defer(_TIMER_INSERT, [t for new in self._new.values() for t in new.timers])
        self._new.clear()
        self._holding.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        """On success, :meth:`flush`; on an error, nothing kept in memory is written and the chain
        goes on from where it was (the transaction rolls back what was)."""
        if error is None:
            self.flush()
            return
        self._new.clear()
        self._holding.__exit__(kind, error, trace)
