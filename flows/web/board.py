"""The ops manager's board: open runs by priority and time left, starting a playbook, cancelling a run.

For ``settings.web.operators`` only (others get 403). ``/board`` lists every open run (P1
first, then the soonest due) with its current steps, who has them, time left (or, on hold,
since when and what it waits for), the ladder reached and repeats; filters by class, SOP, role and person (``mine``). The page polls
``/board/rows`` every second with the ledger version it shows: unchanged, the answer is an
empty 204; changed, the rows again (no reload; without JavaScript the page reads the same,
and reloading refreshes it). ``/board/start/<sop>`` is a form built from the SOP's typed
inputs (the same checks as the API), with a drill toggle and speed; a start that dedup
attaches to an open run says so. Cancelling needs a reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from flows.engine import participants
from flows.engine.board import BoardRun, ledger_version, open_board
from flows.engine.holds import HoldNotAllowed
from flows.engine.inputs import InputRefused, StepNotActive
from flows.engine.load import escalated_to, why_theirs
from flows.engine.view import RunNotFound
from flows.language.durations import SPEED_MAX, SPEED_MIN
from flows.language.spec import PRIORITY
from flows.ledger.vocabulary import StepState
from flows.triggers.refusal import recent, said
from flows.web.app import Web
from flows.web.forms import form_fields, read_form
from flows.web.pages import html, notice, operator_only, signed_form
from flows.web.runs import render_run

log = logging.getLogger("sop.web")
router = APIRouter(include_in_schema=False)
#: how often a waiting long poll looks at the ledger's version
LONG_POLL_CHECK_S = 0.2


def _web(request: Request) -> Web:
    return request.app.state.web


@dataclass(frozen=True)
class Filters:
    """What the board is narrowed to (query parameters; empty means all)."""

    sop_class: str = ""
    sop: str = ""
    role: str = ""
    person: str = ""

    @classmethod
    def of(cls, request: Request, me: str) -> Filters:
        q = request.query_params
        person = (q.get("person") or "").strip()
        return cls(q.get("class", "").strip(), q.get("sop", "").strip(), q.get("role", "").strip(),
                   me if person == "mine" else person)

    def query(self, me: str) -> str:
        pairs = {"class": self.sop_class, "sop": self.sop, "role": self.role,
                 "person": "mine" if self.person and self.person == me else self.person}
        return urlencode({k: v for k, v in pairs.items() if v})

    def problems(self, web: Web, runs: list[BoardRun]) -> list[str]:
        """Values no choice of the form has (an address typed or edited by hand): each said, not "no run matches".
        An SOP of an open run counts (its file may have been removed since it started)."""
        sops = set(web.engine.library.sops) | {run.sop_id for run in runs}
        choices = (("class", self.sop_class, PRIORITY), ("SOP", self.sop, sops),
                   ("role", self.role, web.site.roles), ("person", self.person, web.site.people))
        return [f"`{value}` is no {what} here (one of: {', '.join(sorted(known))})"
                for what, value, known in choices if value and value not in known]

    def keep(self, web: Web, run: BoardRun, escalated: set[tuple[str, str]] | None = None) -> bool:
        if self.sop_class and run.sop_class != self.sop_class:
            return False
        if self.sop and run.sop_id != self.sop:
            return False
        if self.role and not any(s.assignee == self.role for s in run.steps):
            return False
        if self.person:  # theirs: held by them, of their role, or escalated to them (the one rule: why_theirs)
            return any(why_theirs(web.site, self.person, assignee=s.assignee, claimed_by=s.claimed_by,
                                  escalated=s.state == StepState.ACTIVE and (run.id, s.id) in (escalated or ()),
                                  primary=s.person) for s in run.steps)
        return True


def _rows(web: Web, filters: Filters) -> tuple[int, list[BoardRun], list[str]]:
    """The ledger's version, the open runs the filters keep, and what is wrong with the filters."""
    version, runs = open_board(web.engine)
    escalated = escalated_to(web.engine, filters.person, [r.id for r in runs]) if filters.person else set()
    return version, [r for r in runs if filters.keep(web, r, escalated)], filters.problems(web, runs)


@router.get("/board")
def board(request: Request) -> Response:
    session, refused = operator_only(request)
    if refused is not None:
        return refused
    assert session is not None
    web = _web(request)
    filters = Filters.of(request, session.person)
    version, runs, problems = _rows(web, filters)
    library = web.engine.library
    return html(request, "board.html.j2", status=422 if problems else 200, problems=problems, runs=runs,
                version=version, filters=filters, now=web.engine.clock.now(),
                tz=web.zone(session.person), query=filters.query(session.person), sops=sorted(library.sops),
                classes=list(PRIORITY), roles=sorted(web.site.roles), people=sorted(web.site.people),
                me=session.person, cancelled=request.query_params.get("cancelled"),
                **_refused(web))


def _refused(web: Web) -> dict[str, Any]:
    """The board's notice of alerts refused in the last 24 hours (``flows.triggers.refusal``): who reads the board
    is who starts those runs by hand."""
    seen = recent(web.engine.ledger, web.engine.clock.now())
    return {"refused": seen, "refused_said": said(seen)}


@router.get("/board/rows")
async def board_rows(request: Request, after: int = -1, wait: float = 0.0) -> Response:
    """The board's rows once the ledger moved past ``after``; 204 (nothing) when it did not.

    ``wait`` (seconds, at most 25): hold the answer until the ledger moves or the time is up
    (a long poll: the page learns of a change within a fifth of a second, for one cheap query
    every fifth of a second while nothing happens).
    """
    web = _web(request)
    session = await run_in_threadpool(web.session, request)
    if session is None or not web.may(session, "operators"):  # a script asks: an answer it can tell, not a page
        return Response(status_code=401 if session is None else 403, headers={"Cache-Control": "no-store"})
    wait = wait if math.isfinite(wait) else 0.0
    deadline = time.monotonic() + min(max(wait, 0.0), 25.0)
    while after >= 0 and await run_in_threadpool(ledger_version, web.engine) <= after:
        if time.monotonic() >= deadline or await request.is_disconnected():
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        await asyncio.sleep(LONG_POLL_CHECK_S)
    filters = Filters.of(request, session.person)
    version, runs, _ = await run_in_threadpool(_rows, web, filters)
    response = html(request, "board_rows.html.j2", runs=runs, now=web.engine.clock.now(), tz=web.zone(session.person))
    response.headers["X-Board-Version"] = str(version)
    return response


# --- starting a playbook -------------------------------------------------------------------


@router.get("/board/start")
def pick(request: Request) -> Response:
    session, refused = operator_only(request)
    if refused is not None:
        return refused
    web = _web(request)
    sops = sorted((loaded.sop for loaded in web.engine.library.sops.values()), key=lambda s: (PRIORITY[s.class_], s.id))
    return html(request, "start_pick.html.j2", sops=sops)


def _start_page(request: Request, sop_id: str, status: int = 200, **context: Any) -> Response:
    web = _web(request)
    sop = web.engine.library.sops[sop_id].sop
    session = web.session(request)
    return html(request, "start.html.j2", status=status, sop=sop, fields=form_fields(sop.inputs),
                csrf=session.csrf if session else "", speed_min=SPEED_MIN, speed_max=SPEED_MAX,
                **{"errors": {}, "problems": [], "posted": {}, **context})


@router.get("/board/start/{sop_id}")
def start_form(request: Request, sop_id: str) -> Response:
    session, refused = operator_only(request)
    if refused is not None:
        return refused
    if sop_id not in _web(request).engine.library.sops:
        return notice(request, "No such SOP", f"There is no SOP `{sop_id}`.", 404)
    return _start_page(request, sop_id)


@router.post("/board/start/{sop_id}")
async def start(request: Request, sop_id: str) -> Response:
    session, refused = await run_in_threadpool(operator_only, request)
    if refused is not None:
        return refused
    assert session is not None
    web = _web(request)
    if sop_id not in web.engine.library.sops:
        return notice(request, "No such SOP", f"There is no SOP `{sop_id}`.", 404)
    form = await request.form(max_files=0, max_fields=200)
    posted = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if not session.csrf_ok(posted.get("csrf")):
        return notice(request, "This form has expired", "Reload the page and try again. Nothing was started.", 403)
    sop = web.engine.library.sops[sop_id].sop
    values, errors = read_form(sop.inputs, posted)
    speed = None
    if posted.get("drill"):
        try:
            speed = float(posted.get("speed") or "")
            if not SPEED_MIN <= speed <= SPEED_MAX:
                raise ValueError
        except ValueError:
            errors["speed"] = f"a number from {SPEED_MIN:g} to {SPEED_MAX:g} (60 plays an hour in a minute)"
    taking_part = participants.named(posted.get("people")) or None  # empty: everyone the SOP reaches
    if taking_part and (found := participants.problems(web.engine.site, taking_part, drill=bool(posted.get("drill")),
                                                       what="people taking part")):
        errors["people"] = "; ".join(found)
    if errors:
        return _start_page(request, sop_id, 422, errors=errors, posted=posted)
    actor = web.actor(session)
    trigger = {"kind": "drill" if speed else "web", "by": session.person, "via": actor.via,
               **({participants.PEOPLE: taking_part} if taking_part else {})}
    try:
        result = await run_in_threadpool(lambda: web.engine.start(sop_id, values, initiator=actor, trigger=trigger,
                                                                  speed=speed, launch=False))
    except InputRefused as exc:
        errors, problems = _input_problems(exc.problems, sop.inputs)
        return _start_page(request, sop_id, 422, errors=errors, problems=problems, posted=posted)
    if not result.attached:
        request.app.state.launch(result.run_id)
    log.info("event=run_started_from_board run=%s sop=%s by=%s attached=%s", result.run_id, sop_id, session.person,
             result.attached)
    where = f"/runs/{quote(result.run_id)}?" + urlencode({"attached" if result.attached else "started": "1"})
    return web.finish(request, RedirectResponse(where, status_code=303))


def _input_problems(problems: list[str], inputs: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The engine's problems naming an input (``input `brand`: …``) go beside it."""
    errors: dict[str, str] = {}
    rest: list[str] = []
    for problem in problems:
        name = next((n for n in inputs if f"`{n}`" in problem), None)
        if name:
            errors[name] = problem
        else:
            rest.append(problem)
    return errors, rest


# --- acting on a run: cancel, status updates, snoozes, holds----------------------------------------


async def _on_run(request: Request, run: str, failed: str, status: int, call: Any,
                  form: tuple[str, dict[str, str]] | None = None) -> Any:
    """``call()`` off the event loop; a missing run, or the engine's refusal, is the page to answer with
    (titled ``failed``, with ``status``, a way back to the run). With ``form`` (its name on the run page and what
    was posted), a refusal is said beside that form on the run's page, what was typed kept."""
    try:
        return await run_in_threadpool(call)
    except RunNotFound:
        return notice(request, "No such run", f"There is no run `{run}`.", 404)
    except HoldNotAllowed as exc:  # the person may not: 403, whatever ``status`` the other refusals get
        return notice(request, failed, str(exc), 403, action=(f"/runs/{quote(run)}", "Back to the run"))
    except (InputRefused, StepNotActive) as exc:  # InputRefused reads as its problems, joined
        if form is not None:
            return await _refused_on_run(request, run, status, form[0], str(exc), form[1])
        return notice(request, failed, str(exc), status, action=(f"/runs/{quote(run)}", "Back to the run"))


async def _refused_on_run(request: Request, run: str, status: int, name: str, problem: str,
                          posted: dict[str, str]) -> Response:
    """The run's page with ``problem`` beside its form ``name`` and what was posted in it."""
    web = _web(request)
    session = await run_in_threadpool(web.session, request)
    try:
        view = await run_in_threadpool(web.engine.view, run)
    except RunNotFound:
        return notice(request, "No such run", f"There is no run `{run}`.", 404)
    if not view.is_open:  # its forms are gone with it: the refusal is a page of its own
        return notice(request, "Nothing was recorded", problem[:1].upper() + problem[1:], status,
                      action=(f"/runs/{quote(run)}", "Back to the run"))
    return await run_in_threadpool(render_run, request, web, session, view, status, {name: problem}, posted)



@router.post("/runs/{run}/cancel")
async def cancel(request: Request, run: str) -> Response:
    signed = await signed_form(request, "Nothing was cancelled.", operators="the board, starting and cancelling runs")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    web = _web(request)
    reason = str(form.get("reason") or "").strip()
    if not reason:
        return await _refused_on_run(request, run, 422, "cancel", "say why the run is cancelled: it is recorded "
                                     "and sent to the people involved; nothing was cancelled", {})
    view = await _on_run(request, run, "Not cancelled", 409, lambda: web.engine.cancel(run, reason, web.actor(session)))
    if isinstance(view, Response):
        return view
    back = str(form.get("back") or "")
    target = back if back.startswith("/board") else f"/runs/{quote(view.id)}"
    sep = "&" if "?" in target else "?"
    return web.finish(request, RedirectResponse(f"{target}{sep}cancelled={quote(view.id)}", status_code=303))


@router.post("/runs/{run}/updates")
async def post_update(request: Request, run: str) -> Response:
    """Post a status update on a run (anyone signed in who is a person of config)."""
    web = _web(request)
    signed = await signed_form(request, "Nothing was posted.")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    text = str(form.get("text") or "")
    refused = await _on_run(request, run, "Not posted", 422, lambda: web.engine.post_update(run, web.actor(session), text),
                            form=("update", {"text": text}))
    if isinstance(refused, Response):
        return refused
    return web.finish(request, RedirectResponse(f"/runs/{quote(run)}?updated=1#status", status_code=303))


@router.post("/runs/{run}/snooze")
async def snooze(request: Request, run: str) -> Response:
    """Push the run's next status ask (its owner role or their lead; bounded; with a reason)."""
    from flows.language.durations import parse_duration

    web = _web(request)
    signed = await signed_form(request, "Nothing was snoozed.")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    posted = {"for": str(form.get("for") or ""), "reason": str(form.get("reason") or "")}
    try:
        by = parse_duration(posted["for"])
    except ValueError as exc:
        return await _refused_on_run(request, run, 422, "snooze", f"how long: {exc}", posted)
    refused = await _on_run(request, run, "Not snoozed", 422,
                            lambda: web.engine.snooze(run, web.actor(session), by, posted["reason"]),
                            form=("snooze", posted))
    if isinstance(refused, Response):
        return refused
    return web.finish(request, RedirectResponse(f"/runs/{quote(run)}?snoozed=1#status", status_code=303))


@router.post("/runs/{run}/hold")
async def hold_run(request: Request, run: str) -> Response:
    """Put the whole run on hold (its owner role's members or an operator; a reason from its SOP's
    ``waiting_for``): its deadline, cadence and active steps stop until it is released."""
    return await _run_hold(request, run, "hold")


@router.post("/runs/{run}/release")
async def release_run(request: Request, run: str) -> Response:
    """Release the run's hold: its steps' dues and its deadline move by the time held."""
    return await _run_hold(request, run, "release")


async def _run_hold(request: Request, run: str, action: str) -> Response:
    web = _web(request)
    failed = "Not put on hold" if action == "hold" else "Not released"
    signed = await signed_form(request, "Nothing was recorded.")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    actor, note = web.actor(session), str(form.get("note") or "").strip()  # bounded by the engine: said, not cut
    reason = str(form.get("reason") or "").strip()
    done = await _on_run(request, run, failed, 422, lambda: web.engine.hold_run(run, actor, reason, note)
                         if action == "hold" else web.engine.release_run(run, actor, note))
    if isinstance(done, Response):
        return done
    return web.finish(request, RedirectResponse(f"/runs/{quote(run)}?{action}=1#hold", status_code=303))
