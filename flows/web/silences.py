"""Silences in the browser, for operators: what is silenced now and lately, making one, ending one.

``/silences`` lists the silences holding now and those that stopped in the last 7 days
(matchers, until when, who made each and why, who ended it), with a form to make one
(matchers as the SOPs' alert triggers write them, how long, why). A refused form comes back
with each problem beside its field and nothing recorded; ending one needs a reason. The same
book as ``sop silence`` (:class:`flows.engine.silences.SilenceBook`), recorded with ``via: web``.
Others signed in get 403, as on the board.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from flows.engine.silences import MATCHER_HINT, MAX_DURATION, SilenceBook, SilenceNotFound, SilenceRefused
from flows.language.durations import DURATION_HINT, format_duration
from flows.logfmt import kv
from flows.web.app import Web
from flows.web.pages import html, notice, operator_only, signed_form

log = logging.getLogger("sop.web")
router = APIRouter(include_in_schema=False)


def _web(request: Request) -> Web:
    return request.app.state.web


def _operator(request: Request) -> tuple[Any, Response | None]:
    return operator_only(request, "silences")


def _book(web: Web) -> SilenceBook:
    return SilenceBook(web.engine.ledger, web.engine.clock)


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    web = _web(request)
    session = web.session(request)
    now = web.engine.clock.now()
    silences = _book(web).listing(now)
    q = request.query_params
    return html(request, "silences.html.j2", status=status, silences=silences, now=now,
                tz=web.site.settings.timezone, csrf=session.csrf if session else "",
                matcher_hint=MATCHER_HINT, duration_hint=DURATION_HINT, max_for=format_duration(MAX_DURATION),
                made=q.get("made"), ended=q.get("ended"),
                **{"errors": {}, "posted": {}, "end_errors": {}, **context})


@router.get("/silences")
def silences_page(request: Request) -> Response:
    session, refused = _operator(request)
    if refused is not None:
        return refused
    return _page(request)


@router.post("/silences")
async def make(request: Request) -> Response:
    """Make a silence from the form; problems beside their fields (422), nothing recorded."""
    signed = await signed_form(request, "Nothing was silenced.", operators="silences")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    web = _web(request)
    posted = {k: form.get(k, "") for k in ("match", "for", "reason", "from")}
    try:
        made = await run_in_threadpool(lambda: _book(web).create(posted["match"], posted["for"], posted["reason"],
                                                                 web.actor(session), starts=posted["from"] or None,
                                                                 zone=web.site.settings.timezone))
    except SilenceRefused as exc:
        errors = exc.errors
        return await run_in_threadpool(lambda: _page(request, 422, errors=errors, posted=posted))
    log.info(kv("event=silence_from_page", silence=made.id, by=session.person))
    return web.finish(request, RedirectResponse(f"/silences?made={quote(made.id)}#{quote(made.id)}", status_code=303))


@router.post("/silences/{silence_id}/end")
async def end(request: Request, silence_id: str) -> Response:
    """End a silence now, with a reason (beside the row's field when missing)."""
    signed = await signed_form(request, "Nothing was ended.", operators="silences")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    web = _web(request)
    try:
        await run_in_threadpool(_book(web).end, silence_id, web.actor(session), form.get("reason", ""))
    except SilenceNotFound:
        return notice(request, "No such silence", f"There is no silence `{silence_id}`.", 404,
                      action=("/silences", "Back to the silences"))
    except SilenceRefused as exc:
        problems = {silence_id: "; ".join(exc.errors.values())}
        return await run_in_threadpool(lambda: _page(request, 422, end_errors=problems))
    return web.finish(request, RedirectResponse(f"/silences?ended={quote(silence_id)}", status_code=303))
