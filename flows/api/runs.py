"""Runs: start, list, read, report on a step, cancel."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from flows.api import docs
from flows.api.auth import READERS, Principal, raw_body, require
from flows.api.errors import ApiError, parse_body
from flows.engine.board import run_ids, status_rows
from flows.engine.transitions import StepNotActive
from flows.language.actors import Actor, UnknownPerson, check_person
from flows.language.durations import SPEED_MAX, SPEED_MIN
from flows.language.steps.human import HumanReport, HumanStep

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class StartRun(BaseModel):
    """Start a run of an SOP (or attach to its open run with the same dedup key)."""

    model_config = ConfigDict(extra="forbid")

    sop: str = Field(description="SOP id (see `sop list`)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the SOP's declared inputs")
    speed: float | None = Field(
        default=None,
        ge=SPEED_MIN,
        le=SPEED_MAX,
        allow_inf_nan=False,
        description=f"compress time: 3600 makes an hour a second (from {SPEED_MIN:g} to {SPEED_MAX:g})",
    )


class StepReport(BaseModel):
    """A person's report on a human step: done with the form's values, or rejected with a reason."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["done", "rejected"] = "done"
    values: dict[str, Any] = Field(default_factory=dict, description="the step's form fields")
    note: str = ""
    evidence: list[str] = Field(default_factory=list, description="links or file references")
    actor: str | None = Field(
        default=None,
        description="the person of config/ it is reported for (default: the token's person). An operator may "
        "name anyone: recorded as done by the token's person for them (`li-wei for wang-fang`, via api); "
        "a responder only itself",
    )


class CancelRun(BaseModel):
    """Cancel an open run."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="recorded and sent to the people involved")


def _engine(request: Request) -> Any:
    return request.app.state.engine


@router.post(
    "",
    status_code=201,
    openapi_extra=docs.body(StartRun, ("operator",)),
    responses={200: {"description": "attached to the open run with the same dedup key"}},
)
def start_run(request: Request, principal: Principal = require("operator"), raw: bytes = Depends(raw_body)) -> Any:
    """Start a run of an SOP; its owner is paged at once. Roles: operator."""
    body = parse_body(raw, StartRun)
    engine = _engine(request)
    if body.sop not in engine.library.sops:
        raise ApiError(404, f"unknown SOP `{body.sop}` (known: {', '.join(sorted(engine.library.sops))})", "body.sop")
    actor = principal.acting()
    result = engine.start(
        body.sop,
        body.inputs,
        initiator=actor,
        trigger={"kind": "api", "by": actor.person, "token": principal.token},
        speed=body.speed,
        launch=False,
    )
    if not result.attached:
        request.app.state.launch(result.run_id)
    answer = {
        "run": result.run_id,
        "attached": result.attached,
        "repeats": result.repeats,
        "url": f"{engine.site.settings.base_url.rstrip('/')}/v1/runs/{result.run_id}",
    }
    return JSONResponse(answer, status_code=200 if result.attached else 201)


@router.get("", openapi_extra=docs.roles(*READERS))
def list_runs(
    request: Request,
    principal: Principal = require(*READERS),
    status: Literal["running", "finished", "cancelled", "all"] = Query("running", description="which runs"),
    sop: str | None = Query(None, description="only runs of this SOP"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Runs with their steps, dues and time left: open ones by priority, others newest first. Roles: operator, responder, auditor."""
    engine = _engine(request)
    if sop is not None and sop not in engine.library.sops:
        raise ApiError(404, f"unknown SOP `{sop}`", "query.sop")
    ids = run_ids(engine, status=None if status == "all" else status, sop=sop, limit=limit)
    return status_rows(engine, ids=ids)


@router.get("/{run}", openapi_extra=docs.roles(*READERS))
def read_run(request: Request, run: str, principal: Principal = require(*READERS)) -> dict[str, Any]:
    """One run (id or unique prefix). Roles: operator, responder, auditor."""
    return status_rows(_engine(request), run)[0]


def step_of(view: Any, step: str) -> Any:
    """The run's SOP step ``step``; 404 ``path.step`` naming the steps it has when there is none."""
    try:
        return view.sop.step(step)
    except KeyError:
        raise ApiError(
            404,
            f"run {view.id} ({view.sop.id}) has no step `{step}` (steps: {', '.join(s.id for s in view.sop.steps)})",
            "path.step",
        ) from None


@router.post("/{run}/steps/{step}", openapi_extra=docs.body(StepReport, ("operator", "responder")))
def report_step(
    request: Request,
    run: str,
    step: str,
    principal: Principal = require("operator", "responder"),
    raw: bytes = Depends(raw_body),
) -> dict[str, Any]:
    """Report a human step done (with its form values) or rejected. Bad input records nothing.

    Roles: operator (any step; as its token's person, or for the person of config/ named in
    `actor`: recorded as both, `li-wei for wang-fang (api)`), responder (steps assigned to its
    person or their roles, as that person only).
    """
    body = parse_body(raw, StepReport)
    engine = _engine(request)
    view = engine.view(run)
    spec = step_of(view, step)
    if principal.role == "responder":
        actor = _responder_actor(engine, principal, spec, body.actor)
    else:
        actor = _operator_actor(engine, principal, body.actor)
    if body.outcome == "rejected" and not body.note.strip():
        raise ApiError(422, "a rejection needs a reason in `note`", "body.note")
    report = HumanReport(actor=actor, outcome=body.outcome, values=body.values, note=body.note, evidence=body.evidence)
    state = engine.report(view.id, step, report)
    return {"run": view.id, "step": step, "state": state, "actor": actor.person, "actor_text": actor.described()}


def _operator_actor(engine: Any, principal: Principal, claimed: str | None) -> Actor:
    """An operator reports as its person, or for a person of config/ named in ``actor`` (422 ``body.actor`` otherwise)."""
    if claimed is not None:
        try:
            check_person(engine.site, claimed)
        except UnknownPerson as exc:
            raise ApiError(422, str(exc), "body.actor") from None
    return principal.acting(claimed)


def _responder_actor(engine: Any, principal: Principal, step: Any, claimed: str | None) -> Actor:
    """A responder reports as its person, on steps assigned to that person or their roles (403 otherwise)."""
    person = principal.acting().person
    if claimed is not None and claimed != person:
        raise ApiError(403, f"token `{principal.token}` reports as {person}, not {claimed}", "body.actor")
    site = engine.site
    their_roles = sorted(name for name, role in site.roles.items() if person in role.members)
    allowed = {person, *their_roles}
    assigned = [step.assignee] if isinstance(step, HumanStep) else []
    if isinstance(step, HumanStep) and step.approval is not None:
        assigned += step.approval.approvers
    if not allowed & set(assigned):
        raise ApiError(
            403,
            f"step `{step.id}` is assigned to {', '.join(assigned) or 'nobody'}; token "
            f"`{principal.token}` may report only on steps of {person} or their roles "
            f"({', '.join(their_roles) or 'none'})",
            "path.step",
        )
    return principal.acting()


@router.post("/{run}/cancel", openapi_extra=docs.body(CancelRun, ("operator",)))
def cancel_run(
    request: Request, run: str, principal: Principal = require("operator"), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Cancel an open run: steps stop, timers are disarmed, the people involved are told. Roles: operator."""
    body = parse_body(raw, CancelRun)
    reason = body.reason.strip()
    if not reason:
        raise ApiError(422, "a reason is required to cancel a run (it is recorded and sent to the people involved)",
                       "body.reason")
    try:
        view = _engine(request).cancel(run, reason, principal.acting())
    except StepNotActive as exc:  # the run is already cancelled or finished
        raise ApiError(409, str(exc), "path.run") from None
    return {"run": view.id, "status": "cancelled", "reason": reason}


class StatusUpdateBody(BaseModel):
    """A status update on an open run (it keeps the run's status cadence)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000, description="what is happening now, what comes next")


@router.post("/{run}/updates", status_code=201, openapi_extra=docs.body(StatusUpdateBody, ("operator", "responder")))
def post_status_update(
    request: Request, run: str, principal: Principal = require("operator", "responder"), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Post a status update as the token's person. Roles: operator, responder."""
    body = parse_body(raw, StatusUpdateBody)
    engine = _engine(request)
    view = engine.view(run)
    seq = engine.post_update(view.id, principal.acting(), body.text)
    return {"run": view.id, "seq": seq, "by": principal.acting().person}
