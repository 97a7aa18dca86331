"""Reading a run back from the ledger: its rows, its pinned SOP, its template variables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.language.config import Site, expand_env
from flows.language.loader import parse_yaml
from flows.language.spec import Sop
from flows.ledger import utc
from flows.ledger.schema import runs, sop_versions, steps

OPEN = ("running",)
#: ``blocked``: not run because a step it needs failed or was rejected (propagates downstream);
#: ``skipped``: not run by design (``when`` false, branch not taken, on_timeout skip) — counts as finished
TERMINAL_STEP = ("done", "rejected", "skipped", "blocked", "failed", "timed_out", "cancelled")
WAITING_STEP = ("pending", "ready", "running", "active")


class RunNotFound(LookupError):
    """No run with that id (or prefix)."""


_RUN = sa.select(runs).where(runs.c.id == sa.bindparam("_run"))  # built once (see flows.engine.transitions)
_STEPS = sa.select(steps).where(steps.c.run_id == sa.bindparam("_run"))
#: pinned SOPs by text hash (a hash names one text forever, so entries never go stale)
_pinned: dict[str, Sop] = {}


@lru_cache(maxsize=256)
def pinned_sop(text_hash: str, text: str) -> Sop:
    """The SOP a run was started with, parsed from its pinned text (validated at start)."""
    doc, errors = parse_yaml(text, f"<pinned {text_hash[:12]}>")
    if doc is None or errors:
        raise ValueError(f"the pinned SOP text {text_hash[:12]} no longer parses: {errors}")
    return Sop.model_validate(doc.data)


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = utc(value)
    return out


@dataclass
class RunView:
    """A run as the engine sees it: the run row, its step rows by id, and its SOP."""

    run: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    sop: Sop
    #: step rows of a run new in this transaction, not inserted yet (see ``Engine._write_new``)
    unwritten: set[str] = field(default_factory=set)
    #: a new run's timers, not inserted yet; None for a run read from the ledger
    unwritten_timers: list[dict[str, Any]] | None = None

    @property
    def id(self) -> str:
        return self.run["id"]

    @property
    def speed(self) -> float:
        return float(self.run["speed"] or 1.0)

    @property
    def is_open(self) -> bool:
        return self.run["status"] in OPEN

    def state(self, step_id: str) -> str:
        return self.steps[step_id]["state"]

    def result(self, step_id: str) -> dict[str, Any]:
        raw = self.steps[step_id].get("result")
        return json.loads(raw) if raw else {}

    def approvals(self, step_id: str) -> list[str]:
        raw = self.steps[step_id].get("approvals")
        return json.loads(raw) if raw else []


def resolve_run_id(conn: Connection, run_id: str) -> str:
    """A full run id from an id or a unique prefix; RunNotFound otherwise."""
    if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first():
        return run_id
    found = [r.id for r in conn.execute(sa.select(runs.c.id).where(runs.c.id.like(f"{run_id}%")).limit(3))]
    if len(found) == 1:
        return found[0]
    if found:
        raise RunNotFound(f"run id `{run_id}` is ambiguous (matches {', '.join(found)}…)")
    raise RunNotFound(f"no run `{run_id}` (see `sop status` for open runs)")


def load_view(conn: Connection, run_id: str) -> RunView:
    """Load a run, its steps and its pinned SOP; RunNotFound when there is none."""
    run = conn.execute(_RUN, {"_run": run_id}).first()
    if run is None:  # not a full id: a unique prefix, or nothing
        run = conn.execute(_RUN, {"_run": resolve_run_id(conn, run_id)}).first()
        assert run is not None
    sop = _pinned.get(run.sop_hash)
    if sop is None:  # pinned texts never change: read and parse each one once per process
        text = conn.execute(sa.select(sop_versions.c.text).where(sop_versions.c.hash == run.sop_hash)).scalar_one()
        sop = _pinned[run.sop_hash] = pinned_sop(run.sop_hash, text)
    rows = {r.step_id: _row(r) for r in conn.execute(_STEPS, {"_run": run.id})}
    return RunView(run=_row(run), steps=rows, sop=sop)


#: what the database fills in for the columns a new run's insert leaves out; a test compares
#: :func:`new_view` with :func:`load_view` of the written run, so the two cannot drift apart
_RUN_DEFAULTS: dict[str, Any] = {"finished_at": None, "outcome": None, "suspends": 0, "nudge": False}
_STEP_DEFAULTS: dict[str, Any] = {"ready_at": None, "due_at": None, "finished_at": None, "actor": None, "note": None,
                                  "result": None, "approvals": None, "deadline_met": None}


def new_view(run: dict[str, Any], step_rows: list[dict[str, Any]], sop: Sop) -> RunView:
    """The view of a run about to be inserted (``run``: its row as inserted; ``step_rows``: not inserted yet).

    Equal to what :func:`load_view` reads once everything is written, without reading it back.
    """
    row = {**_RUN_DEFAULTS, **run}
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = utc(value)
    rows = {s["step_id"]: {**_STEP_DEFAULTS, **s} for s in step_rows}
    return RunView(run=row, steps=rows, sop=sop, unwritten=set(rows), unwritten_timers=[])


def run_fields(view: RunView, base_url: str) -> dict[str, Any]:
    """``run.*`` of the template variables."""
    run = view.run
    return {"id": run["id"], "sop": run["sop_id"], "title": run["title"], "started_at": run["started_at"],
            "deadline_at": run["deadline_at"], "initiator": run["initiator"], "speed": view.speed,
            "url": f"{base_url.rstrip('/')}/v1/runs/{run['id']}", "class": run["sop_class"],
            "priority": run["priority"]}


def variables(view: RunView, site: Site) -> dict[str, Any]:
    """The template variables of a run: inputs, steps.<id>.*, trigger, run, config."""
    step_vars: dict[str, Any] = {}
    for step_id, row in view.steps.items():
        entry = {"state": row["state"], "outcome": row["state"] if row["state"] in TERMINAL_STEP else None,
                 "actor": row["actor"], "note": row["note"], "finished_at": row["finished_at"]}
        entry.update(view.result(step_id))
        step_vars[step_id] = entry
        step_vars[step_id.replace("-", "_")] = entry
    config_vars = {k: expand_env(v) if isinstance(v, str) and "${" in v else v for k, v in site.vars.items()}
    return {
        "inputs": json.loads(view.run["inputs"] or "{}"),
        "steps": step_vars,
        "trigger": json.loads(view.run["trigger"] or "null") or {},
        "run": run_fields(view, site.settings.base_url),
        "config": config_vars,
    }
