"""Holds over the API: put a step on hold (its clock stops) and release it, as the token's person.

Refusals, nothing recorded: 404 an unknown run (``path.run``) or step (``path.step``); 403 a
person who may not (``path.step``: only whoever holds the step, its role's lead, the run's owner
and the operators may); 422 a reason the step does not declare (``body.reason``); 409 a step
not active, already on hold, or (release) not on hold.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from flows.api import docs
from flows.api.auth import Principal, raw_body, require
from flows.api.errors import parse_body
from flows.api.runs import step_of
from flows.language.fields import TEXT_MAX

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class HoldStep(BaseModel):
    """Put a step on hold for one of its SOP's `waiting_for` reasons."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=80, description="one of the SOP's (or step's) `waiting_for`")
    note: str = Field(default="", max_length=TEXT_MAX, description="what exactly it waits for (recorded)")


class ReleaseStep(BaseModel):
    """Release a step's hold: its clock runs again."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=TEXT_MAX, description="what came (recorded)")


@router.post("/{run}/steps/{step}/hold", status_code=201, openapi_extra=docs.body(HoldStep, ("operator", "responder")))
def hold_step(request: Request, run: str, step: str, principal: Principal = require("operator", "responder"),
              raw: bytes = Depends(raw_body)) -> dict[str, Any]:
    """Put a step on hold as the token's person (whoever holds the step, its lead, the run's owner or an
    operator): reminders and escalations stop; past its `max_hold` it escalates. Roles: operator, responder."""
    body = parse_body(raw, HoldStep)
    engine = request.app.state.engine
    actor = principal.acting()
    view = engine.view(run)
    step_of(view, step)
    max_at = engine.hold(view.id, step, actor, body.reason.strip(), body.note)
    return {"run": view.id, "step": step, "held_by": actor.person, "reason": body.reason.strip(),
            "escalates_at": max_at.isoformat()}


@router.post("/{run}/steps/{step}/release", openapi_extra=docs.body(ReleaseStep, ("operator", "responder")))
def release_step(request: Request, run: str, step: str, principal: Principal = require("operator", "responder"),
                 raw: bytes = Depends(raw_body)) -> dict[str, Any]:
    """Release a step's hold as the token's person: its due instant moves by the time held. Roles: operator,
    responder."""
    body = parse_body(raw, ReleaseStep)
    engine = request.app.state.engine
    actor = principal.acting()
    view = engine.view(run)
    step_of(view, step)
    due = engine.release(view.id, step, actor, body.note)
    return {"run": view.id, "step": step, "released_by": actor.person, "due_at": due.isoformat() if due else None}


@router.post("/{run}/hold", status_code=201, openapi_extra=docs.body(HoldStep, ("operator", "responder")))
def hold_run(request: Request, run: str, principal: Principal = require("operator", "responder"),
             raw: bytes = Depends(raw_body)) -> dict[str, Any]:
    """Put the whole run on hold as the token's person (its owner role's members or an operator): its
    deadline, status cadence and every active step stop; steps it activates start held; past the SOP's
    `max_hold` it escalates. Roles: operator, responder."""
    body = parse_body(raw, HoldStep)
    engine = request.app.state.engine
    actor = principal.acting()
    view = engine.view(run)
    max_at = engine.hold_run(view.id, actor, body.reason.strip(), body.note)
    return {"run": view.id, "held_by": actor.person, "reason": body.reason.strip(), "escalates_at": max_at.isoformat()}


@router.post("/{run}/release", openapi_extra=docs.body(ReleaseStep, ("operator", "responder")))
def release_run(request: Request, run: str, principal: Principal = require("operator", "responder"),
                raw: bytes = Depends(raw_body)) -> dict[str, Any]:
    """Release the run's hold as the token's person: its steps' dues and its deadline move by the time held.
    Roles: operator, responder."""
    body = parse_body(raw, ReleaseStep)
    engine = request.app.state.engine
    actor = principal.acting()
    view = engine.view(run)
    deadline = engine.release_run(view.id, actor, body.note)
    return {"run": view.id, "released_by": actor.person, "deadline_at": deadline.isoformat() if deadline else None}
