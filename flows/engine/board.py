"""The run board: runs as rows (priority, steps, dues, time left) — what `sop status` and the API show."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from flows.engine.paging import time_left
from flows.engine.store import RunStore, load_view
from flows.ledger.schema import deliveries, runs
from flows.ledger.vocabulary import RunStatus, StepState


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
        out = []
        for rid in ids:
            view = load_view(conn, rid)
            failed = conn.execute(_FAILED_LANES, {"_run": rid}).scalar_one()
            steps = []
            for step in view.sop.steps:
                row = view.steps[step.id]
                steps.append(
                    {
                        "step": step.id,
                        "title": step.name,
                        "kind": step.kind,
                        "state": row["state"],  # type: ignore[attr-defined]
                        "assignee": row["assignee"],
                        "due_at": row["due_at"],
                        "time_left": time_left(row["due_at"], now, view.speed) if row["state"] == StepState.ACTIVE else None,
                        "actor": row["actor"],
                    }
                )
            run = view.run
            out.append(
                {
                    "run": rid,
                    "sop": run["sop_id"],
                    "title": run["title"],
                    "priority": f"P{run['priority']}",
                    "class": run["sop_class"],
                    "status": run["status"],
                    "outcome": run["outcome"],
                    "started_at": run["started_at"],
                    "deadline_at": run["deadline_at"],
                    "deadline_left": time_left(run["deadline_at"], now, view.speed) if view.is_open else None,
                    "speed": view.speed,
                    "repeats": run["repeats"],
                    "last_seen_at": run["last_seen_at"],
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
