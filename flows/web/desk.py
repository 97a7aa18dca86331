"""The auditor's desk: ``sop audit …`` in the browser, for the auditor role, read only.

- ``/desk``                   runs, with the filters of ``sop audit runs`` (since, until, SOP, class, drills);
  ``/desk/runs.csv`` the same bytes as ``sop audit runs --csv``
- ``/desk/runs/<run>``        one run's whole story (``sop audit show``) with its chart;
  ``/desk/runs/<run>.json`` the same bytes as ``sop audit show --json``
- ``/desk/report``            the compliance figures and the runs' charts;
  ``/desk/report.csv`` / ``.json`` the same bytes as ``sop audit report --csv - / --json -``,
  ``/desk/report.html`` the printable report (``--html``), chain verified
- ``/desk/verify``            the chain's verification and the head to note down (``sop audit verify``)

Everything comes from :class:`flows.audit.Audit` over the engine's ledger: the hash-chained
records, as the CLI and the API read them. Only people of ``settings.web.auditors`` (people
or roles) open these pages; others get 403, and nobody signed in is asked to sign in.
A filter that does not parse is shown beside its field (422), never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from flows.audit import Audit, AuditError, Window
from flows.audit.export import to_csv, to_json
from flows.audit.gantt import page_charts, page_legend
from flows.audit.report import COMPLIANCE_COLUMNS, DEFINITIONS, DRILLS_NOTE, SOP_TIME_NOTE
from flows.audit.scope import CLASSES, DRILLS, NotFound, check_class, check_drills
from flows.audit.summary import RUN_COLUMNS
from flows.audit.timeline import acknowledged_text, document
from flows.audit.verification import Anchor
from flows.language.durations import format_duration
from flows.language.presentation import skip_reason
from flows.web.app import Web
from flows.web.pages import html, notice, sign_in_first

router = APIRouter(prefix="/desk", include_in_schema=False)
#: the desk's list and report draw at most this many runs; the downloads hold every one
SHOWN_RUNS = 500
CHARTS = 20
DRILL_CHOICES = {"include": "count them", "exclude": "leave them out", "only": "drills alone"}


def _web(request: Request) -> Web:
    return request.app.state.web


def _auditor(request: Request) -> tuple[Web, str] | Response:
    """The desk's reader (the web state, their time zone), or the answer for anyone else."""
    web = _web(request)
    session = web.session(request)
    if session is None:
        return sign_in_first(request)
    if not web.may(session, "auditors"):
        return notice(request, "For auditors only", f"The auditor's desk is open to {web.who_may('auditors')}: ask "
                      "them for a run's story (settings.web.auditors).", 403)
    return web, web.zone(session.person, web.site.settings.timezone)


def _download(body: str, media_type: str, name: str) -> Response:
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                          "Cache-Control": "no-store"})


def dur(seconds: float | None) -> str:
    """SOP seconds as ``1h5m`` (— for none)."""
    return "—" if seconds is None else format_duration(timedelta(seconds=seconds))


# --- what is asked: the filters of `sop audit runs` and `report` ------------------------------


@dataclass
class Asked:
    """The desk's filters as typed, each problem beside its field, and the window they make."""

    since: str = ""
    until: str = ""
    sop: str = ""
    sop_class: str = ""
    drills: str = "include"
    errors: dict[str, str] = field(default_factory=dict)
    within: Window = field(default_factory=Window)

    @property
    def ok(self) -> bool:
        return not self.errors

    def query(self) -> str:
        """The filters as a query string (``?since=7d&drills=exclude``) for the downloads' links."""
        pairs = [(k, v) for k, v in (("since", self.since), ("until", self.until), ("sop", self.sop),
                                     ("class", self.sop_class)) if v]
        if self.drills != "include":
            pairs.append(("drills", self.drills))
        return f"?{urlencode(pairs)}" if pairs else ""

    def filters(self) -> dict[str, Any]:
        return {"sop": self.sop or None, "sop_class": self.sop_class or None, "drills": self.drills}


def _said(exc: AuditError) -> str:
    return f"{exc.message}: {exc.hint}" if exc.hint else exc.message


def read_asked(audit: Audit, params: Any, zone: str) -> Asked:
    """The filters from the query, checked as the CLI checks them (``Audit.window``, ``check_class``,
    ``check_drills``); each problem kept beside its field. Dates and times without an offset are ``zone``'s: the
    reader's, in which the desk shows every time."""
    asked = Asked(since=(params.get("since") or "").strip(), until=(params.get("until") or "").strip(),
                  sop=(params.get("sop") or "").strip(), sop_class=(params.get("class") or "").strip(),
                  drills=(params.get("drills") or "include").strip())
    for name in ("since", "until"):  # each alone first, so a problem goes beside its own field
        value = getattr(asked, name)
        if value:
            try:
                audit.window(**{name: value}, zone=zone)
            except AuditError as exc:
                asked.errors[name] = _said(exc)
    if not asked.errors:
        try:
            asked.within = audit.window(asked.since or None, asked.until or None, zone)
        except AuditError as exc:  # both parse, but the window is empty
            asked.errors["until"] = _said(exc)
    for name, check in (("class", lambda: check_class(asked.sop_class or None)),
                        ("drills", lambda: check_drills(asked.drills)), ("sop", lambda: audit.check_sop(asked.sop or None))):
        try:
            check()
        except AuditError as exc:
            asked.errors[name] = _said(exc)
    return asked


def _form_context(web: Web, asked: Asked) -> dict[str, Any]:
    return {"asked": asked, "classes": CLASSES, "drill_choices": [(d, DRILL_CHOICES[d]) for d in DRILLS],
            "drills_note": DRILLS_NOTE, "sop_ids": sorted(web.engine.library.sops)}


# --- runs ------------------------------------------------------------------------------------


@router.get("")
def runs_page(request: Request) -> Response:
    """Runs with the filters of ``sop audit runs``, drills marked; each opens its story."""
    reader = _auditor(request)
    if isinstance(reader, Response):
        return reader
    web, tz = reader
    audit = Audit.of(web.engine)
    asked = read_asked(audit, request.query_params, tz)
    lines = audit.lines(asked.within, **asked.filters()) if asked.ok else []
    chain = web.chain()
    return html(request, "desk_runs.html.j2", chain=chain, touched=audit.touched(chain.result if chain else None),
                status=200 if asked.ok else 422, lines=lines[:SHOWN_RUNS],
                total=len(lines), tz=tz, section="runs", **_form_context(web, asked))


@router.get("/runs.csv")
def runs_csv(request: Request) -> Response:
    """The runs as ``sop audit runs --csv`` writes them."""
    reader = _auditor(request)
    if isinstance(reader, Response):
        return reader
    web, tz = reader
    audit = Audit.of(web.engine)
    asked = read_asked(audit, request.query_params, tz)
    if not asked.ok:
        return runs_page(request)
    return _download(to_csv(audit.lines(asked.within, **asked.filters()), RUN_COLUMNS), "text/csv",
                     "sop-audit-runs.csv")


# --- one run's story -------------------------------------------------------------------------


def _story(request: Request, run: str) -> tuple[Audit, Any, str] | Response:
    """The run (by id or unique prefix) as its audit, or the page that says why not."""
    reader = _auditor(request)
    if isinstance(reader, Response):
        return reader
    web, tz = reader
    audit = Audit.of(web.engine)
    try:
        return audit, audit.run(run), tz
    except NotFound as exc:
        return notice(request, "No such run", _said(exc), 404, action=("/desk", "All runs"))
    except AuditError as exc:  # an ambiguous prefix
        return notice(request, "Which run?", _said(exc), 422, action=("/desk", "All runs"))


@router.get("/runs/{run}.json")
def run_json(request: Request, run: str) -> Response:
    """One run's story as ``sop audit show --json`` writes it."""
    found = _story(request, run)
    if isinstance(found, Response):
        return found
    audit, story, _ = found
    web = _web(request)
    # the desk's last walk, when it reached the run's last record; else (none yet, or one made before the run's latest
    # records: the file would vouch for records nobody checked) walked now, once, as `sop audit show --json` does
    checked = web.last_chain()
    if checked is None or any(entry.at >= checked.at for entry in story.entries):  # (the head it reports is the last
        checked = web.chain(audit.verify(workers=1))  # checkpoint: records after it are walked, not anchored)
    verified = checked.result  # type: ignore[union-attr]
    doc = {**document(story, audit.now()), "verification": verified.summary()}  # the file alone says what it rests on
    return _download(to_json(doc), "application/json", f"sop-audit-run-{story.id}.json")


@router.get("/runs/{run}")
def run_page(request: Request, run: str) -> Response:
    """One run end to end (``sop audit show``): trigger, inputs, deadlines, every record with its details,
    every page and its deliveries, the chart, and the exact SOP text."""
    found = _story(request, run)
    if isinstance(found, Response):
        return found
    audit, story, tz = found
    if story.id != run:  # a prefix: the page's address names the whole id
        return RedirectResponse(f"/desk/runs/{quote(story.id)}", status_code=303)
    now = audit.now()
    doc = document(story, now)
    chain = _web(request).chain()
    return html(request, "desk_run.html.j2", chain=chain, unsound=chain.result.unsound if chain else {}, doc=doc, drill=story.is_drill, chart=page_charts(story, now), legend=page_legend(),
                tz=tz, dur=dur, details=entry_details, as_json=to_json, section="runs", acknowledged=acknowledged_text,
                sop_time_note=SOP_TIME_NOTE)


def entry_details(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """What a timeline record says beyond its line: form values, evidence, approvers, note, token,
    reason, and each delivery of a page (the details ``sop audit show`` prints under it)."""
    data, kind = entry["data"], entry["kind"]
    out: list[tuple[str, str]] = []
    if kind == "notification":
        for r in data.get("results") or []:
            result = "delivered" if r.get("ok") else f"failed: {r.get('error') or 'unknown error'}"
            out.append(("→", f"{r.get('recipient', '?')} {r.get('destination', '?')} {result} "
                             f"({r.get('attempts')} attempt(s))"))
        out += [("→", f"{person} kept for their digest") for person in data.get("kept") or []]
        out += [("→", f"{n.get('to')} not sent: {n.get('why')}") for n in data.get("not_sent") or []]
        return out
    if kind in ("step_done", "step_rejected"):
        result = data.get("result") or {}
        evidence, approvers = result.get("evidence"), result.get("approvers")
        if entry.get("values_text"):  # a choice with the label its reader was shown
            out.append(("values", entry["values_text"]))
        for item in evidence or []:
            out.append(("evidence", item))
        if approvers:
            out.append(("approvers", ", ".join(approvers)))
    if data.get("note"):
        out.append(("note", str(data["note"])))
    if data.get("token"):
        out.append(("token", str(data["token"])))
    if kind in ("step_failed", "step_timed_out") and data.get("reason"):
        out.append(("reason", str(data["reason"])))
    if kind in ("step_skipped", "follow_up_skipped") and (condition := skip_reason(data)[1]):
        out.append(("condition", condition))
    return out




# --- the compliance report -------------------------------------------------------------------


def _report_asked(request: Request) -> tuple[Web, str, Audit, Asked] | Response:
    reader = _auditor(request)
    if isinstance(reader, Response):
        return reader
    web, tz = reader
    audit = Audit.of(web.engine)
    return web, tz, audit, read_asked(audit, request.query_params, tz)


@router.get("/report")
def report_page(request: Request) -> Response:
    """The compliance figures (per SOP, class, role, overall) and the first runs' charts, with the downloads."""
    found = _report_asked(request)
    if isinstance(found, Response):
        return found
    web, tz, audit, asked = found
    report, charts = None, []
    if asked.ok:
        report, runs = audit.report(asked.within, **asked.filters())
        now = report.generated_at
        charts = [(line, page_charts(run, now)) for line, run in zip(report.runs[:CHARTS], runs, strict=False)]
    return html(request, "desk_report.html.j2", chain=web.chain(), status=200 if asked.ok else 422, report=report, charts=charts,
                legend=page_legend(), dur=dur, definitions=DEFINITIONS, sop_time_note=SOP_TIME_NOTE, tz=tz,
                section="report", **_form_context(web, asked))


def _figures(request: Request) -> tuple[Audit, Asked, Any] | Response:
    found = _report_asked(request)
    if isinstance(found, Response):
        return found
    _, _, audit, asked = found
    if not asked.ok:
        return report_page(request)
    return audit, asked, audit.report(asked.within, **asked.filters())[0]


@router.get("/report.csv")
def report_csv(request: Request) -> Response:
    """The figures as ``sop audit report --csv -`` writes them."""
    found = _figures(request)
    if isinstance(found, Response):
        return found
    return _download(to_csv(found[2].rows, COMPLIANCE_COLUMNS), "text/csv", "sop-audit-report.csv")


@router.get("/report.json")
def report_json(request: Request) -> Response:
    """The figures and run lines as ``sop audit report --json -`` writes them."""
    found = _figures(request)
    if isinstance(found, Response):
        return found
    return _download(to_json(found[2].to_dict()), "application/json", "sop-audit-report.json")


@router.get("/report.html")
def report_html(request: Request) -> Response:
    """The printable report (``sop audit report --html``): self-contained, every run's chart, the chain verified."""
    found = _report_asked(request)
    if isinstance(found, Response):
        return found
    _, _, audit, asked = found
    if not asked.ok:
        return report_page(request)
    from flows.audit.html import render_html

    report, charts = audit.report_with_sections(asked.within, **asked.filters())
    return HTMLResponse(render_html(report, charts, verification=audit.verify()), headers={"Cache-Control": "no-store"})


# --- the chain -------------------------------------------------------------------------------


@router.get("/verify")
def verify_page(request: Request) -> Response:
    """The hash chain walked (``sop audit verify``): intact or its first break, and the head to note down;
    ``anchor=SEQ:HASH`` (a head noted earlier) also proves nothing was cut off or rewritten since."""
    reader = _auditor(request)
    if isinstance(reader, Response):
        return reader
    web, tz = reader
    typed = [part for given in request.query_params.getlist("anchor") for part in given.split()]
    anchors, problems = [], []
    for text in typed:
        try:
            anchors.append(Anchor.parse(text))
        except AuditError as exc:
            problems.append(_said(exc))
    result = None if problems else Audit(web.engine.ledger).verify(anchors)  # one process in a threaded server
    chain = web.chain(walked=result if result is not None and not anchors else None)  # the desk's banner: this walk
    return html(request, "desk_verify.html.j2", chain=chain, status=422 if problems else 200, result=result, anchors=typed,
                anchor_error="; ".join(problems), section="verify", checked_at=web.engine.clock.now(), tz=tz)
