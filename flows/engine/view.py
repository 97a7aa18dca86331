"""A run as the engine sees it (its rows and its pinned SOP) and its template variables.

Reading one from the ledger is the run store's (``flows.engine.store.load_view``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows.language.config import Site, expand_env
from flows.language.fields import FieldSpec
from flows.language.presentation import named
from flows.language.spec import Sop
from flows.ledger.vocabulary import OPEN_RUN, TERMINAL_STEP, WAITING_STEP, is_drill

#: re-exported names of the vocabulary (flows.ledger.vocabulary), for readers of a view
OPEN = OPEN_RUN
__all__ = ["OPEN", "TERMINAL_STEP", "WAITING_STEP", "RunNotFound", "RunView", "run_fields", "variables"]


class RunNotFound(LookupError):
    """No run with that id (or prefix)."""


@dataclass
class RunView:
    """A run as the engine sees it: the run row, its step rows by id, and its SOP."""

    run: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    sop: Sop

    @property
    def id(self) -> str:
        return self.run["id"]

    @property
    def speed(self) -> float:
        return float(self.run["speed"] or 1.0)

    @property
    def is_open(self) -> bool:
        return self.run["status"] in OPEN

    @property
    def trigger(self) -> dict[str, Any]:
        """What started the run (a manual start, an alert, a drill…), {} when nothing says."""
        value = json.loads(self.run.get("trigger") or "null")
        return value if isinstance(value, dict) else {}

    @property
    def subject(self) -> str | None:
        """What the run is about (its dedup key: ``storefront``, ``lumi``; a choice's label: :meth:`Sop.subject`), None
        when its SOP has none."""
        return self.sop.subject(self.run.get("dedup_key"))

    @property
    def is_drill(self) -> bool:
        return is_drill(self.trigger)

    def state(self, step_id: str) -> str:
        return self.steps[step_id]["state"]

    def result(self, step_id: str) -> dict[str, Any]:
        raw = self.steps[step_id].get("result")
        return json.loads(raw) if raw else {}

    def approvals(self, step_id: str) -> list[str]:
        raw = self.steps[step_id].get("approvals")
        return json.loads(raw) if raw else []


def deadline_met(deadline_at: datetime | None, outcome: str, ended_at: datetime) -> bool | None:
    """Whether a run that ended at ``ended_at`` with ``outcome`` met its deadline (None: it has none). A run that
    failed did not carry out its procedure: its deadline is not met, however early it ended (docs/audit.md,
    "Definitions"); a rejection is a person's answer, judged by its time like a done."""
    if deadline_at is None:
        return None
    return outcome != "failed" and ended_at <= deadline_at


def run_fields(view: RunView, base_url: str) -> dict[str, Any]:
    """``run.*`` of the template variables."""
    run = view.run
    return {"id": run["id"], "sop": run["sop_id"], "title": run["title"], "started_at": run["started_at"],
            "deadline_at": run["deadline_at"], "initiator": run["initiator"], "speed": view.speed,
            "url": f"{base_url.rstrip('/')}/runs/{run['id']}", "class": run["sop_class"],  # its page: people open it
            "priority": run["priority"], "drill": view.is_drill}


def _labelled(values: dict[str, Any], fields: dict[str, FieldSpec]) -> dict[str, Any]:
    """``values`` with each choice of a field carrying its label (``FieldSpec.labelled``): text people read shows
    "Product quality", every comparison and program still reads ``product_quality``."""
    return {k: fields[k].labelled(v) if k in fields and fields[k].enum else v for k, v in values.items()}


def variables(view: RunView, site: Site) -> dict[str, Any]:
    """The template variables of a run: inputs, steps.<id>.*, trigger, run, config. A choice of an input or a form
    field is itself to every expression and program, and its label in text people read."""
    step_vars: dict[str, Any] = {}
    forms = {step.id: getattr(step, "form", None) for step in view.sop.steps}
    for step_id, row in view.steps.items():
        # who did it: their id to every expression and program, their name in text people read (as a choice's label)
        entry = {"state": row["state"], "outcome": row["state"] if row["state"] in TERMINAL_STEP else None,
                 "actor": named(site, row["actor"]), "note": row["note"], "finished_at": row["finished_at"]}
        entry.update(_labelled(view.result(step_id), forms.get(step_id) or {}))
        step_vars[step_id] = entry
        step_vars[step_id.replace("-", "_")] = entry
    config_vars = {k: expand_env(v) if isinstance(v, str) and "${" in v else v for k, v in site.vars.items()}
    return {
        "inputs": _labelled(json.loads(view.run["inputs"] or "{}"), view.sop.inputs),
        "steps": step_vars,
        "trigger": view.trigger,
        "run": run_fields(view, site.settings.base_url),
        "config": config_vars,
    }


def instructions(view: RunView, step: Any, site: Site) -> str | None:
    """A step's description with the run's values filled in (``{{ inputs.brand }}``), as its reader sees it.

    A description that cannot render (a value the run does not have) is shown as written.
    """
    text = getattr(step, "description", None)
    if not text or "{" not in text:
        return text
    from flows.language.expressions import render_text

    try:
        return render_text(text, variables(view, site))
    except Exception:  # noqa: BLE001 - instructions are shown even when a value is missing
        return text
