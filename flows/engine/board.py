"""The run board: runs as rows (priority, steps, dues, time left) — what `sop status` and the API show."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from flows.engine.holds import RUN
from flows.engine.monitoring import Monitoring, monitoring_of
from flows.engine.oncall import Rota
from flows.engine.page_context import time_left
from flows.engine.store import RunStore, load_view
from flows.language.presentation import run_subject
from flows.ledger import utc
from flows.ledger.schema import deliveries, holds, records, runs, steps, timers
from flows.ledger.vocabulary import RecordKind, RunStatus, StepState, TimerKind, is_drill


def run_ids(engine: Any, *, status: str | None = RunStatus.RUNNING, sop: str | None = None, limit: int = 100) -> list[str]:
    """Ids of runs: open ones by priority then age; otherwise newest first. ``status=None``: every status."""
    query = sa.select(runs.c.id)
    if status is not None:
        query = query.where(runs.c.status == status)
    if sop is not None:
        query = query.where(runs.c.sop_id == sop)
    if status == RunStatus.RUNNING:
        query = query.order_by(runs.c.priority, runs.c.started_at)
    else:
        query = query.order_by(runs.c.started_at.desc())
    with engine.ledger.read() as conn:
        return [r.id for r in conn.execute(query.limit(limit))]


def _failed_lanes() -> sa.Select:
    """How many lanes of a run's pages reached nobody: a person reached on a later contact is
    reached, a page set aside before delivery is one failure. Rows without a page (written
    before migration 0004) count one by one."""
    reached = sa.func.max(sa.case((deliveries.c.ok.is_(True), 1), else_=0))
    lanes = (
        sa.select(sa.literal(1).label("one"))
        .where(deliveries.c.run_id == sa.bindparam("_run"))
        .group_by(sa.func.coalesce(deliveries.c.page, -deliveries.c.id), sa.func.coalesce(deliveries.c.lane, 0))
        .having(reached == 0)
        .subquery()
    )
    return sa.select(sa.func.count()).select_from(lanes)


_FAILED_LANES = _failed_lanes()  # built once, like the engine's queries

#: the reports of people on the runs asked about, in order: whose hand each step's answer came by (``by``, an operator
#: who reported for its ``actor``) is in the record's facts, not in the steps' row
_REPORTS = (sa.select(records.c.run_id, records.c.step_id, records.c.data)
            .where(records.c.kind.in_((RecordKind.STEP_DONE, RecordKind.STEP_REJECTED)))
            .order_by(records.c.seq))


def _reported_by(conn: Any, ids: list[str]) -> dict[tuple[str, str], str]:
    """(run, step) → who reported the step's answer for its actor, where someone did (the last report wins)."""
    out: dict[tuple[str, str], str] = {}
    for row in conn.execute(_REPORTS.where(records.c.run_id.in_(ids))) if ids else ():
        by = json.loads(row.data or "{}").get("by")
        if by:
            out[(row.run_id, row.step_id)] = by
        else:
            out.pop((row.run_id, row.step_id), None)
    return out


def status_rows(engine: Any, run_id: str | None = None, *, ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Open runs by priority (or one run, or the runs ``ids``), each with its steps, dues and time left."""
    now = datetime.now(UTC)
    with engine.ledger.read() as conn:
        if run_id:
            ids = [load_view(conn, run_id).id]
        elif ids is None:
            ids = [
                r.id
                for r in conn.execute(
                    sa.select(runs.c.id).where(runs.c.status == RunStatus.RUNNING).order_by(runs.c.priority, runs.c.started_at)
                )
            ]
        given_up = RunStore.launches_given_up(conn, ids)
        said = monitoring_of(conn, ids)
        rota = Rota(engine.site, conn, engine.clock.now())
        held = {(h.run_id, h.step_id): {"since": utc(h.held_at), "reason": h.reason, "by": h.held_by}
                for h in conn.execute(_HOLDS_OF.where(holds.c.run_id.in_(ids)))} if ids else {}
        reported_by = _reported_by(conn, ids)
        out = []
        for rid in ids:
            view = load_view(conn, rid)
            failed = conn.execute(_FAILED_LANES, {"_run": rid}).scalar_one()
            steps = []
            for step in view.sop.steps:
                row = view.steps[step.id]
                hold = held.get((rid, step.id)) if row["state"] == StepState.ACTIVE else None
                steps.append(
                    {
                        "step": step.id,
                        "title": step.name,
                        "kind": step.kind,
                        "state": row["state"],  # type: ignore[attr-defined]
                        "assignee": row["assignee"],
                        # who has an active step: its holder, else its role's primary now
                        "person": (row.get("claimed_by") or (rota.person_for(row["assignee"]) if row["assignee"]
                                                              else None)) if row["state"] == StepState.ACTIVE else None,
                        "due_at": row["due_at"],
                        # on hold its clock is stopped: no time runs out (its due moves by the time held at release)
                        "time_left": time_left(row["due_at"], now, view.speed)
                        if row["state"] == StepState.ACTIVE and hold is None else None,
                        "actor": row["actor"],
                        # who reported it for `actor` (an operator, e.g. through the API), None when they did it
                        "actor_by": reported_by.get((rid, step.id)) if row["actor"] else None,
                        "hold": hold,  # since, reason, by: while it is on hold
                    }
                )
            run = view.run
            out.append(
                {
                    "run": rid,
                    "sop": run["sop_id"],
                    "title": run["title"],
                    "subject": view.subject,  # what it is about (its dedup key): two runs of one SOP differ in it
                    "priority": f"P{run['priority']}",
                    "class": run["sop_class"],
                    "status": run["status"],
                    "outcome": run["outcome"],
                    "started_at": run["started_at"],
                    "deadline_at": run["deadline_at"],
                    "deadline_left": time_left(run["deadline_at"], now, view.speed)
                    if view.is_open and (rid, RUN) not in held else None,
                    "hold": held.get((rid, RUN)),  # the whole run on hold: its deadline waits
                    "speed": view.speed,
                    "drill": view.is_drill,  # its trigger says drill (a compressed real run is none)
                    "repeats": run["repeats"],
                    "last_seen_at": run["last_seen_at"],
                    # the latest repeat (when, what it said), and the alert resolved since (when, which)
                    "monitoring": asdict(said[rid]) if rid in said else None,
                    "dedup_key": run["dedup_key"],
                    "initiator": run["initiator"],
                    "inputs": json.loads(run["inputs"] or "{}"),
                    "trigger": json.loads(run["trigger"] or "null"),
                    "failed_notifications": failed,
                    # why its automated steps cannot start (its launch was given up on, no flow run since)
                    "automation": given_up.get(rid) if view.is_open and not run["flow_run_id"] else None,
                    "steps": steps,
                }
            )
    return out


# --- one line per run: `sop status --short` ---------------------------------------------------------------


def _most_urgent(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The step of a run that runs out first: a waiting step's soonest due (one on hold has its clock stopped: only
    when every waiting step is), else an automated step under way or failed; None when the run is at none."""
    waiting = [s for s in steps if s["state"] == StepState.ACTIVE]
    current = ([s for s in waiting if s["hold"] is None] or waiting
               or [s for s in steps if s["state"] in (StepState.READY, StepState.RUNNING, StepState.FAILED)])
    far = datetime.max.replace(tzinfo=UTC)
    return min(current, key=lambda s: s["due_at"] or far) if current else None


def _state(row: dict[str, Any], step: dict[str, Any] | None, left_s: float | None) -> str:
    """A run's state in a word or two: on hold (the run, or each step it waits on), automation stopped, step failed,
    overdue, running; an ended run's outcome."""
    if row["status"] != RunStatus.RUNNING:
        return row["outcome"] or row["status"]
    if row["hold"] or (step is not None and step["hold"]):  # the run, or every step it waits on
        return "on hold"
    if row["automation"]:
        return "automation stopped"
    if step is not None and step["state"] == StepState.FAILED:
        return "step failed"
    return "overdue" if left_s is not None and left_s < 0 else "running"


def seconds_left(due_at: datetime | None, now: datetime, speed: float) -> float | None:
    """The seconds left before ``due_at`` in SOP time (what :func:`~flows.engine.page_context.time_left` says; below 0:
    overdue), None without a due."""
    return (due_at - now).total_seconds() * speed if due_at is not None else None


def by_urgency(priority: int, left_s: float | None, started_at: Any) -> tuple[Any, ...]:
    """A sort key, most urgent first: by class (complaint > outage > policy > routine), then the least time left
    (none last), then the oldest run."""
    return (priority, left_s is None, left_s or 0.0, started_at)


def short_rows(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Each run of :func:`status_rows` as one line's facts (``sop status --short``): its priority, SOP, subject, state,
    its next due (the most urgent step's, or the run's deadline when that comes first) with the time left, and who
    holds the most urgent step (who took it, else its role's person now). By priority (complaint > outage > policy
    > routine), then the least time left (SOP time: what the line says), then the oldest."""
    out = []
    for row in rows:
        step = _most_urgent(row["steps"])
        dues = [(step["due_at"], step["step"], step["title"])] if step and step["due_at"] and not step["hold"] else []
        if row["deadline_left"] is not None and row["deadline_at"] is not None:
            dues.append((row["deadline_at"], None, "run deadline"))
        due_at, due_step, due_title = min(dues, key=lambda d: d[0]) if dues else (None, None, None)
        left_s = seconds_left(due_at, now, row["speed"])
        person = step.get("person") if step else None
        out.append({
            "run": row["run"], "priority": row["priority"], "class": row["class"], "sop": row["sop"],
            "title": row["title"], "subject": row["subject"], "state": _state(row, step, left_s),
            "step": step["step"] if step else None, "step_title": step["title"] if step else None,
            "step_kind": step["kind"] if step else None,
            "holder": person, "role": step["assignee"] if step and step["assignee"] != person else None,
            "due_at": due_at, "due": due_step or ("run" if due_at is not None else None), "due_title": due_title,
            "time_left": time_left(due_at, now, row["speed"]), "left_s": left_s, "speed": row["speed"],
            "drill": row["drill"], "started_at": row["started_at"],
        })
    return sorted(out, key=lambda r: by_urgency(r["priority"], r["left_s"], r["started_at"]))


# --- the operators' board: every open run in one query per kind of fact, no SOP text parsed -----------------

#: the steps a run shows now: waiting, starting, running, and an automated one that failed (someone may have to
#: carry it out by hand: the run goes on, and ends failed)
_CURRENT = (StepState.ACTIVE, StepState.READY, StepState.RUNNING, StepState.FAILED)
_OPEN_RUNS = sa.select(runs.c.id, runs.c.sop_id, runs.c.title, runs.c.sop_class, runs.c.priority, runs.c.initiator,
                       runs.c.trigger, runs.c.repeats, runs.c.last_seen_at, runs.c.speed, runs.c.started_at,
                       runs.c.deadline_at, runs.c.dedup_key).where(runs.c.status == RunStatus.RUNNING)
_CURRENT_STEPS = (sa.select(steps.c.run_id, steps.c.step_id, steps.c.kind, steps.c.state, steps.c.assignee,
                            steps.c.due_at, steps.c.claimed_by)
                  .join(runs, runs.c.id == steps.c.run_id)
                  .where((runs.c.status == RunStatus.RUNNING) & steps.c.state.in_(_CURRENT)))
_LEVELS_FIRED = (sa.select(timers.c.run_id, timers.c.step_id, timers.c.level, timers.c.fired_at)
                 .join(runs, runs.c.id == timers.c.run_id)
                 .where((runs.c.status == RunStatus.RUNNING) & (timers.c.kind == TimerKind.LADDER)
                        & timers.c.fired_at.is_not(None)))
#: holds not released (the runs ``sop status`` asks about narrow it), and those of open runs (the board)
_HOLDS_OF = (sa.select(holds.c.run_id, holds.c.step_id, holds.c.reason, holds.c.held_at, holds.c.held_by)
             .where(holds.c.released_at.is_(None)))
_OPEN_HOLDS = _HOLDS_OF.join(runs, runs.c.id == holds.c.run_id).where(runs.c.status == RunStatus.RUNNING)
#: how the steps of open runs came to their holders, in order: taken ("I'll take it") or handed over by someone
_HOLDINGS = (sa.select(records.c.run_id, records.c.step_id, records.c.kind, records.c.actor, records.c.data)
             .join(runs, runs.c.id == records.c.run_id)
             .where((runs.c.status == RunStatus.RUNNING)
                    & records.c.kind.in_((RecordKind.STEP_CLAIMED, RecordKind.STEP_HANDED_OVER)))
             .order_by(records.c.seq))
_VERSION = sa.select(sa.func.max(records.c.seq))


@dataclass
class BoardStep:
    """A step a run is at now: who has it (the role, its person, who took it), its due, the ladder reached."""

    id: str
    title: str
    kind: str
    state: str
    assignee: str | None
    person: str | None
    claimed_by: str | None
    due_at: datetime | None
    level: str | None
    levels_fired: int
    held_at: datetime | None = None  # on hold since (its clock stopped), and why
    hold_reason: str | None = None
    held_by: str | None = None
    #: who handed it to ``claimed_by`` (``li-wei``, ``li-wei for zhao-lei``), None when they took it themselves
    handed_by: str | None = None


@dataclass
class BoardRun:
    """An open run as the board shows it."""

    id: str
    sop_id: str
    title: str
    sop_class: str
    priority: int
    initiator: str | None
    trigger: dict[str, Any]
    repeats: int
    last_seen_at: datetime | None
    speed: float
    started_at: datetime
    deadline_at: datetime | None
    steps: list[BoardStep] = field(default_factory=list)
    held_at: datetime | None = None  # the whole run on hold since (its deadline waits), and why
    hold_reason: str | None = None
    subject: str | None = None  # what it is about (its dedup key: ``storefront``): two runs of one SOP differ in it
    monitoring: Monitoring | None = None  # the latest repeat of its signal, its alert resolved since

    @property
    def is_drill(self) -> bool:
        """Started as a drill (its trigger's kind, :func:`~flows.ledger.vocabulary.is_drill`), whatever its speed."""
        return is_drill(self.trigger)

    @property
    def next_due(self) -> datetime | None:
        """The soonest instant something is due: an active step's due or the run's deadline."""
        dues = [s.due_at for s in self.steps if s.due_at is not None and s.state != StepState.FAILED
                and s.held_at is None] + ([self.deadline_at] if self.deadline_at and self.held_at is None else [])
        return min(dues) if dues else None


def ledger_version(engine: Any) -> int:
    """The newest record's seq: any change of any run moves it (the board's live updates compare it)."""
    with engine.ledger.read() as conn:
        return int(conn.execute(_VERSION).scalar() or 0)


def _subject(library: Any, sop_id: str, dedup_key: str | None) -> str | None:
    """A run's subject as people read it (:meth:`Sop.subject`, by its SOP as loaded now, as the board's titles)."""
    loaded = library.sops.get(sop_id)
    return loaded.sop.subject(dedup_key) if loaded is not None else run_subject(dedup_key)


def open_board(engine: Any) -> tuple[int, list[BoardRun]]:
    """Every open run with its current steps (those on hold: since when, why), P1 first, then the soonest due;
    and the ledger's version."""
    library = engine.library
    titles: dict[tuple[str, str], str] = {}
    for loaded in library.sops.values():
        for step in loaded.sop.steps:
            titles[(loaded.sop.id, step.id)] = step.name
    with engine.ledger.read() as conn:
        version = int(conn.execute(_VERSION).scalar() or 0)
        board = {r.id: BoardRun(r.id, r.sop_id, r.title, r.sop_class, r.priority, r.initiator,
                                json.loads(r.trigger or "null") or {}, r.repeats, utc(r.last_seen_at), float(r.speed or 1),
                                utc(r.started_at), utc(r.deadline_at),  # type: ignore[arg-type]
                                subject=_subject(library, r.sop_id, r.dedup_key))
                 for r in conn.execute(_OPEN_RUNS)}
        fired: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        for t in conn.execute(_LEVELS_FIRED):
            fired.setdefault((t.run_id, t.step_id), []).append((utc(t.fired_at), t.level))  # type: ignore[arg-type]
        held = {(h.run_id, h.step_id): h for h in conn.execute(_OPEN_HOLDS)}
        for (run_id, step_id), hold in held.items():
            if step_id == RUN and run_id in board:
                board[run_id].held_at, board[run_id].hold_reason = utc(hold.held_at), hold.reason
        handed: dict[tuple[str, str], str | None] = {}  # the last taking or handing over of each step wins
        for r in conn.execute(_HOLDINGS):
            data = json.loads(r.data or "{}") if r.kind == RecordKind.STEP_HANDED_OVER else {}
            by = data.get("by")
            handed[(r.run_id, r.step_id)] = ((f"{by} for {r.actor}" if by and by != r.actor else r.actor)
                                             if r.kind == RecordKind.STEP_HANDED_OVER else None)
        for run_id, said in monitoring_of(conn, board).items():
            board[run_id].monitoring = said
        rota = Rota(engine.site, conn, engine.clock.now())
        for s in conn.execute(_CURRENT_STEPS):
            run = board.get(s.run_id)
            if run is None:
                continue
            levels = sorted(fired.get((s.run_id, s.step_id), []))
            hold = held.get((s.run_id, s.step_id))
            run.steps.append(BoardStep(s.step_id, titles.get((run.sop_id, s.step_id), s.step_id), s.kind, s.state,
                                       s.assignee, rota.person_for(s.assignee) if s.assignee else None, s.claimed_by,
                                       utc(s.due_at),
                                       levels[-1][1] if levels else None, len(levels),
                                       utc(hold.held_at) if hold else None, hold.reason if hold else None,
                                       hold.held_by if hold else None,
                                       handed.get((s.run_id, s.step_id)) if s.claimed_by else None))
    far = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(board.values(), key=lambda r: (r.priority, r.next_due or far, r.started_at))
    return version, ordered


def last_deliveries(engine: Any) -> dict[str, dict[str, Any]]:
    """Each recipient's newest delivery (when, which page, through what, ok or the error): the People page."""
    newest = (sa.select(deliveries.c.recipient, sa.func.max(deliveries.c.id).label("id"))
              .group_by(deliveries.c.recipient).subquery())
    query = sa.select(deliveries).join(newest, deliveries.c.id == newest.c.id)
    with engine.ledger.read() as conn:
        return {row.recipient: {**dict(row._mapping), "at": utc(row.at)} for row in conn.execute(query)}

