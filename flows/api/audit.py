"""The audit over HTTP, read only: the same data as ``sop audit …`` under ``/v1/audit``.

The app (``flows.api.app``) includes this router behind its token check (readers:
auditor, operator, responder), so the routes here carry no authentication of their own.
Bodies are what the CLI prints with ``--json`` / ``--csv`` (and the HTML report), but the report here does not
verify the chain (the CLI's does, adding ``verification``): ``/v1/audit/verify`` does, beside it.

- ``GET /v1/audit/runs?sop=&class=&since=&until=&drills=include|exclude|only&format=json|csv``
- ``GET /v1/audit/runs/{run}``                  one run's whole timeline and SOP text
- ``GET /v1/audit/report?since=&until=&sop=&class=&drills=include|exclude|only&format=json|csv|html&timelines=N``
- ``GET /v1/audit/verify?anchor=SEQ:HASH``      ``ok`` false (still 200) when the chain is broken
- ``GET /v1/audit/sops/{sop}/history``          versions that ran, with diffs
- ``GET /v1/audit/actions?since=&until=&kind=sign-in|oncall|silence&format=json|csv``  what people did outside runs
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from flows.audit import Audit, AuditError
from flows.audit.export import to_csv, to_json
from flows.audit.report import COMPLIANCE_COLUMNS
from flows.audit.scope import NotFound
from flows.audit.summary import RUN_COLUMNS
from flows.audit.verification import Anchor

router = APIRouter(prefix="/v1/audit", tags=["audit"])
SINCE = Query(None, description="runs started from: 2026-03-01, an ISO time (UTC unless it has an offset), or 7d")
UNTIL = Query(None, description="runs started before (a date includes that whole day)")
SOP = Query(None, description="only runs of this SOP id")
CLASS = Query(None, alias="class", description="only this class: complaint, outage, policy, routine")
DRILLS = Query("include", description="drills count like any run (include), are left out (exclude) or alone (only)")


def _audit(request: Request) -> Audit:
    return Audit.of(request.app.state.engine)


def _refused(exc: AuditError, field: str) -> Exception:
    from flows.api.errors import ApiError

    message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return ApiError(404 if isinstance(exc, NotFound) else 422, message, field)


def _json(data: object) -> Response:
    return Response(to_json(data), media_type="application/json")


def _window(subject: Any, since: str | None, until: str | None) -> Any:
    """The window of ``since``/``until``; a 422 naming the one that does not parse (``since`` when they are in the
    wrong order)."""
    for field, alone in (("since", (since, None)), ("until", (None, until)), ("since", (since, until))):
        try:
            within = subject.window(*alone)
        except AuditError as exc:
            raise _refused(exc, f"query.{field}") from None
    return within


@router.get("/runs")
def audit_runs(request: Request, since: str | None = SINCE, until: str | None = UNTIL, sop: str | None = SOP,
               sop_class: str | None = CLASS, drills: str = DRILLS,
               format: Literal["json", "csv"] = "json") -> Response:  # noqa: A002
    """One line per run: SOP and version hash, trigger, start, end, outcome, deadline met or missed, escalations;
    ``drill`` marks drills."""
    subject = _audit(request)
    within = _window(subject, since, until)
    try:
        lines = subject.lines(within, sop=sop, sop_class=sop_class, drills=drills)
    except AuditError as exc:
        raise _refused(exc, f"query.{exc.field or 'class'}") from None
    if format == "csv":
        return PlainTextResponse(to_csv(lines, RUN_COLUMNS), media_type="text/csv")
    return _json([line.to_dict() for line in lines])


@router.get("/actions")
def audit_actions(request: Request, since: str | None = Query(None, description="from: 2026-03-01, an ISO time or 7d"),
                  until: str | None = Query(None, description="before (a date includes that whole day)"),
                  kind: list[str] = Query(default_factory=list, description="sign-in, oncall, silence (repeatable; "
                                                                              "none: all)"),
                  format: Literal["json", "csv"] = "json") -> Response:  # noqa: A002
    """What people did outside any run: sign-ins, on-call overrides made and ended, silences made and ended; who
    and how it came, and what, in the order it came."""
    from flows.audit.actions import ACTION_COLUMNS

    subject = _audit(request)
    within = _window(subject, since, until)
    try:
        lines = subject.actions(within, kind or None)
    except AuditError as exc:
        raise _refused(exc, "query.kind") from None
    if format == "csv":
        return PlainTextResponse(to_csv(lines, ACTION_COLUMNS), media_type="text/csv")
    return _json([line.to_dict() for line in lines])


@router.get("/runs/{run}")
def audit_run(request: Request, run: str) -> Response:
    """The whole timeline of one run (id or unique prefix): trigger payload, steps, notifications with
    per-destination results, escalations, reports, every deadline and verdict, and the exact SOP text."""
    try:
        return _json(_audit(request).show(run))
    except AuditError as exc:
        raise _refused(exc, "path.run") from None


@router.get("/report")
def audit_report(request: Request, since: str | None = SINCE, until: str | None = UNTIL, sop: str | None = SOP,
                 sop_class: str | None = CLASS, drills: str = DRILLS,
                 format: Literal["json", "csv", "html"] = "json",  # noqa: A002
                 timelines: int | None = Query(None, ge=0, description="HTML: draw at most this many run timelines")) -> Response:
    """SLA compliance per SOP, per class and overall, late steps by role; ``format=html`` is the printable report."""
    subject = _audit(request)
    within = _window(subject, since, until)
    try:
        if format == "html":  # on one process: the server runs threads, so forking is not safe (nor tried)
            report, charts = subject.report_with_sections(within, sop=sop, sop_class=sop_class, max_timelines=timelines,
                                                          drills=drills)
        else:
            report, _ = subject.report(within, sop=sop, sop_class=sop_class, drills=drills)
    except AuditError as exc:
        raise _refused(exc, f"query.{exc.field or 'class'}") from None
    if format == "csv":
        return PlainTextResponse(to_csv(report.rows, COMPLIANCE_COLUMNS), media_type="text/csv")
    if format == "html":
        from flows.audit.html import render_html

        return HTMLResponse(render_html(report, charts, verification=subject.verify()))
    return _json(report.to_dict())


@router.get("/verify")
def audit_verify(request: Request, anchor: list[str] = Query(default_factory=list,
                                                             description="SEQ:HASH noted after an earlier audit")) -> Response:
    """Recompute the hash chain: ``ok``, the first broken record (edited, deleted, inserted, reordered), the head."""
    try:
        anchors = [Anchor.parse(a) for a in anchor]
    except AuditError as exc:
        raise _refused(exc, "query.anchor") from None
    return _json(_audit(request).verify(anchors).to_dict())


@router.get("/sops/{sop}/history")
def audit_history(request: Request, sop: str) -> Response:
    """Which versions (exact texts) of an SOP ran when, with a unified diff between consecutive ones."""
    engine = request.app.state.engine
    current = engine.library.sops[sop].text_hash if sop in engine.library.sops else None
    try:
        return _json(_audit(request).history(sop, current).to_dict())
    except AuditError as exc:
        raise _refused(exc, "path.sop") from None
