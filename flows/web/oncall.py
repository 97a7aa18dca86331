"""On call in the browser: who is primary and backup of each role now and next; an override form.

For ``settings.web.operators`` only (others get 403), like the board. ``/oncall`` lists every
role's stretches from now (rotation, override or fixed, and why); its form records an
override (``flows.engine.oncall.add_override``, the same checks as ``sop oncall override``)
as the signed-in operator (``via: web``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from flows.engine.oncall import OverrideRefused, add_override, end_override, upcoming
from flows.language.actors import UnknownPerson
from flows.language.oncall import parse_instant
from flows.language.presentation import names_in
from flows.web.app import Web
from flows.web.pages import html, operator_only, signed_form

log = logging.getLogger("sop.web")
router = APIRouter(include_in_schema=False)
#: how many stretches the page shows per role
STRETCHES = 4


def _web(request: Request) -> Web:
    return request.app.state.web


def _page(request: Request, web: Web, csrf: str, status: int = 200, problem: str | None = None,
          posted: dict[str, str] | None = None, added: str | None = None, ended: str | None = None) -> Response:
    now = web.engine.clock.now()
    site = web.site
    plans = {name: upcoming(site, web.engine.ledger, name, now, now + timedelta(days=60))[:STRETCHES]
             for name in sorted(site.roles)}
    return html(request, "oncall.html.j2", status=status, plans=plans, roles=site.roles, csrf=csrf, problem=problem,
                posted=posted or {}, added=added, ended=ended, tz=site.settings.timezone)


@router.get("/oncall")
def oncall_page(request: Request) -> Response:
    session, refused = operator_only(request, "on-call overrides")
    if refused is not None:
        return refused
    assert session is not None
    return _page(request, _web(request), session.csrf, added=request.query_params.get("added"),
                 ended=request.query_params.get("ended"))


@router.post("/oncall/override")
async def override(request: Request) -> Response:
    signed = await signed_form(request, "Nothing was recorded.", operators="on-call overrides")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    web = _web(request)
    posted = {k: str(form.get(k) or "").strip() for k in ("role", "person", "from", "until", "reason")}

    try:
        made = await run_in_threadpool(_record, web, session, posted)
    except (ValueError, OverrideRefused, UnknownPerson) as exc:
        return await run_in_threadpool(_page, request, web, session.csrf, 422, _form_words(str(exc), web.site), posted)
    log.info("event=oncall_override_from_web id=%s role=%s person=%s by=%s", made.id, made.role, made.person,
             session.person)
    return web.finish(request, RedirectResponse("/oncall?" + urlencode({"added": str(made.id)}), status_code=303))


@router.post("/oncall/override/{override_id}/end")
async def end(request: Request, override_id: int) -> Response:
    """End an override now (or withdraw one not begun), with a reason, as ``sop oncall override end`` does."""
    signed = await signed_form(request, "Nothing was recorded.", operators="on-call overrides")
    if isinstance(signed, Response):
        return signed
    session, form = signed
    web = _web(request)
    reason = str(form.get("reason") or "").strip()
    try:
        await run_in_threadpool(end_override, web.engine.ledger, override_id, reason, web.actor(session))
    except OverrideRefused as exc:
        return await run_in_threadpool(_page, request, web, session.csrf, 422, _form_words(str(exc), web.site))
    log.info("event=oncall_override_ended_from_web id=%s by=%s", override_id, session.person)
    return web.finish(request, RedirectResponse("/oncall?" + urlencode({"ended": str(override_id)}), status_code=303))


def _form_words(text: str, site: Any) -> str:
    """A refusal worded for the terminal (its options, config's ids) in the words of this page's form: “Until”,
    people by name and roles by title (:func:`flows.language.presentation.names_in`)."""
    for option, field in (("a --reason", "a reason"), ("--until", "“Until”"), ("--from", "“From”"),
                          ("--reason", "“Reason”")):
        text = text.replace(option, field)
    return names_in(site, text)


def _record(web: Web, session: Any, posted: dict[str, str]) -> Any:
    """The form's override, recorded as the signed-in operator; ValueError/OverrideRefused say what is wrong."""
    now = web.engine.clock.now()
    zone = web.site.settings.timezone
    if not posted["until"]:
        raise ValueError("say until when (e.g. +3d, or a date and time)")
    starts_at = parse_instant(posted["from"], zone, now=now) if posted["from"] else now
    ends_at = parse_instant(posted["until"], zone, now=now, base=starts_at)
    return add_override(web.site, web.engine.ledger, posted["role"], posted["person"], starts_at, ends_at,
                        posted["reason"], web.actor(session))
