"""A run's page (``/runs/<run>``: its steps, who has each, the pages sent) and the home list of what waits for you
(``/``): the pages a responder opens after her step, kept apart from the step page's forms (``flows/web/pages.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from flows.audit import Audit
from flows.audit.followups import verdict as follow_up_verdict
from flows.audit.gantt import page_charts
from flows.engine.holds import RUN, open_hold
from flows.engine.monitoring import monitoring_of
from flows.engine.view import RunNotFound, RunView
from flows.language.cadence import effective_cadence
from flows.language.steps.human import HumanStep
from flows.ledger.vocabulary import RunStatus, StepState
from flows.web.app import Web
from flows.web.pages import html, notice, sign_in_first
from flows.web.sessions import Session

router = APIRouter(include_in_schema=False)


def _web(request: Request) -> Web:
    return request.app.state.web


@router.get("/runs/{run}")
def run_page(request: Request, run: str) -> Response:
    """One run: its steps, who holds them, dues and time left, the ladder reached, every page and its delivery."""
    web = _web(request)
    session = web.session(request)
    if session is None:
        return sign_in_first(request)
    try:
        view = web.engine.view(run)
    except RunNotFound:
        return notice(request, "No such run", f"There is no run `{run}`.", 404)
    return render_run(request, web, session, view)


def render_run(request: Request, web: Web, session: Session, view: Any, status: int = 200,
               problems: dict[str, str] | None = None, posted: dict[str, str] | None = None) -> Response:
    """The run's page; ``problems``: a refused form's (``cancel``, ``update``, ``snooze``) said beside it, with
    what was ``posted`` in it kept."""
    audit = Audit(web.engine.ledger).run(view.id)
    now = web.engine.clock.now()
    q = request.query_params
    run_hold = open_hold(web.engine.ledger, view.id, RUN) if view.is_open else None
    with web.engine.ledger.read() as conn:
        monitoring = monitoring_of(conn, [view.id]).get(view.id)
    sent, earlier = pages_sent(audit)
    return html(request, "run.html.j2", status=status, problems=problems or {}, posted=posted or {},
                view=view, run=view.run, sop=view.sop, audit=audit, now=now, sent=sent, earlier=earlier,
                operator=web.may(session, "operators"), csrf=session.csrf, started=q.get("started"),
                cadence=effective_cadence(view.sop, web.site), updated=q.get("updated"), snoozed=q.get("snoozed"),
                attached=q.get("attached"), cancelled=q.get("cancelled"), run_hold=run_hold,
                may_hold=view.is_open and web.engine.may_hold_run(view, session.person),
                held=q.get("hold"), released=q.get("release"),
                speed=view.speed, tz=web.zone(session.person), chart=page_charts(audit, now),
                levels={sid: (s.escalations[-1].level if s.escalations else None) for sid, s in audit.steps.items()},
                human_ids={s.id for s in view.sop.steps if isinstance(s, HumanStep)}, open=view.is_open,
                whom=_whom(web, view, audit),
                follow_up=follow_up_verdict(audit, now), monitoring=monitoring)


#: the deliveries a run's page shows unfolded besides its failures: the latest, what a reader checks first
RECENT_PAGES = 5


@dataclass(frozen=True)
class Sent:
    """One delivery of a page of the run (a person's digest keeping it is one too), as its page lists it."""

    at: datetime
    kind: str
    step: str  # — for a page about the whole run
    to: str
    through: str
    ok: bool
    error: str | None = None
    kept: bool = False  # kept for ``to``'s digest rather than sent


def pages_sent(audit: Any) -> tuple[list[Sent], list[Sent]]:
    """The run's deliveries in the order they went, split in what its page shows first (every failure, and the
    latest :data:`RECENT_PAGES`) and the earlier ones that went well, folded behind their count: a busy run sent
    dozens, and a phone scrolled past them for ages. Nothing is lost: the fold opens, and the audit lists each."""
    notes = sorted([(n, sid) for sid, step in audit.steps.items() for n in step.notifications]
                   + [(n, "—") for n in audit.notifications], key=lambda pair: pair[0].at)
    rows = [Sent(n.at, n.kind, sid, d.recipient, d.destination, d.ok, d.error) for n, sid in notes for d in n.deliveries]
    rows += [Sent(n.at, n.kind, sid, p, "digest", True, kept=True) for n, sid in notes for p in n.kept]
    rows.sort(key=lambda row: row.at)  # stable: a page's deliveries, then the digests that kept it
    first = len(rows) - RECENT_PAGES
    return ([r for i, r in enumerate(rows) if i >= first or not r.ok],
            [r for i, r in enumerate(rows) if i < first and r.ok])


def _whom(web: Web, view: RunView, audit: Any) -> dict[str, str | None]:
    """Whom each human step is with: the person it went to, else (not yet ready) whom its role means now. A reader
    looks for hers among ten steps, the ones still to come too."""
    out: dict[str, str | None] = {}
    for s in view.sop.steps:
        if isinstance(s, HumanStep):
            story = audit.steps.get(s.id)
            assignee = view.steps[s.id].get("assignee") or s.assignee
            out[s.id] = (story.person if story is not None else None) or web.engine.person_for(assignee)
    return out


@router.get("/runs", include_in_schema=False)
def runs_list(request: Request) -> Response:
    """``/runs`` (a run's page is ``/runs/<run>``): the open runs are on the home page."""
    return RedirectResponse("/#runs", status_code=303)


@router.get("/")
def home(request: Request) -> Response:
    """What waits for you: the active steps you may act on, and those whose escalation paged you; the open runs by
    priority."""
    web = _web(request)
    session = web.session(request)
    if session is None:
        return sign_in_first(request)
    from flows.engine.board import run_ids
    from flows.engine.load import ESCALATED, escalated_to, why_theirs

    engine = web.engine
    mine, runs = [], []
    ids = run_ids(engine, status=RunStatus.RUNNING, limit=200)
    escalated = escalated_to(engine, session.person, ids)
    for run_id in ids:
        view = engine.view(run_id)
        runs.append(view)
        for step in view.sop.steps:
            if isinstance(step, HumanStep) and view.steps[step.id]["state"] == StepState.ACTIVE:
                theirs = why_theirs(web.site, session.person, assignee=step.assignee,
                                    claimed_by=view.steps[step.id].get("claimed_by"),
                                    escalated=(view.id, step.id) in escalated)
                if theirs is not None:  # held by them, of their role and untaken, or its ladder reached them
                    mine.append((view, step, theirs.why == ESCALATED))
    return html(request, "home.html.j2", mine=mine, runs=runs, now=engine.clock.now(), tz=web.zone(session.person))
