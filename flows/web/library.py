"""The library (every SOP: its description, steps graph, ladder, triggers, versions) and the people.

Both are for anyone signed in. The graph is the Mermaid text `sop graph` prints, drawn in the
browser by Mermaid served from this machine (``static/vendor``, fetched by ``make``); without
JavaScript, or without that file, the text itself is shown. Versions and their diffs are read
from the hash-chained records (``sop audit history``). The People page shows each role's
members, each person's contacts (masked, as deliveries are recorded) and their last delivery,
and sends a test page to yourself (what ``sop notify-test`` does).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from flows.audit import Audit, AuditError
from flows.engine.board import last_deliveries
from flows.language.outline import describe, mermaid
from flows.language.spec import PRIORITY
from flows.web.app import Web
from flows.web.pages import html, notice, sign_in_first, signed_form
from flows.web.render import STATIC
from notifications import deliver, recipients, test_message
from notifications.masking import mask_url

log = logging.getLogger("sop.web")
router = APIRouter(include_in_schema=False)


def _web(request: Request) -> Web:
    return request.app.state.web


def _mermaid_js() -> str | None:
    found = sorted((STATIC / "vendor").glob("mermaid-*.min.js"))
    return f"/static/vendor/{found[-1].name}" if found else None


@router.get("/library")
def library(request: Request) -> Response:
    web = _web(request)
    if web.session(request) is None:
        return sign_in_first(request)
    sops = sorted((loaded.sop for loaded in web.engine.library.sops.values()), key=lambda s: (PRIORITY[s.class_], s.id))
    return html(request, "library.html.j2", sops=sops)


@router.get("/library/{sop_id}")
def sop_page(request: Request, sop_id: str) -> Response:
    web = _web(request)
    if web.session(request) is None:
        return sign_in_first(request)
    loaded = web.engine.library.sops.get(sop_id)
    if loaded is None:
        return notice(request, "No such SOP", f"There is no SOP `{sop_id}` in the library.", 404)
    try:
        history = Audit(web.engine.ledger).history(sop_id, loaded.text_hash)
    except AuditError:
        history = None  # it never ran
    return html(request, "sop.html.j2", sop=loaded.sop, outline=describe(loaded.sop), graph=mermaid(loaded.sop),
                mermaid_js=_mermaid_js(), history=history, current=loaded.text_hash)


def _on_call_now(web: Web) -> dict[str, Any]:
    """Who is primary and backup of each role now (a rotating role's shift, an override)."""
    return {name: web.engine.on_call(name) for name in web.site.roles}


@router.get("/people")
def people(request: Request) -> Response:
    web = _web(request)
    session = web.session(request)
    if session is None:
        return sign_in_first(request)
    site = web.site
    return html(request, "people.html.j2", roles=site.roles, people=site.people, mask=mask_url,
                on_call=_on_call_now(web), last=last_deliveries(web.engine), results=None, csrf=session.csrf,
                tz=web.zone(session.person))


@router.post("/people/test")
async def test_page(request: Request) -> Response:
    """Send me a test page: through every contact of the signed-in person, each result shown."""
    web = _web(request)
    signed = await signed_form(request, "Nothing was sent.")
    if isinstance(signed, Response):
        return signed
    session, _ = signed
    site = web.site
    sent_at = datetime.now(UTC)
    people = recipients([session.person], site)
    results = await run_in_threadpool(
        lambda: deliver(lambda r: test_message(r, "the People page", sent_at), people, retries=0, timeout=10,
                        inbox_dir=site.settings.inbox_dir))
    log.info("event=test_page person=%s delivered=%d of=%d", session.person, sum(r.ok for r in results), len(results))
    return html(request, "people.html.j2", roles=site.roles, people=site.people, mask=mask_url,
                on_call=_on_call_now(web), last=last_deliveries(web.engine), results=results, csrf=session.csrf,
                tz=web.zone(session.person))
