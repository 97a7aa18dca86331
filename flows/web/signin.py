"""Signing in with a link sent through the person's own contacts, and signing out.

``POST /sign-in`` with a person id or e-mail sends a sign-in link (single use, expiring after
``settings.web.sign_in_ttl`` on the engine's clock) to that person's contacts of ``config/``,
whoever asked: only the person can read it. The answer is the same whether or not the name
is a person, and as quick (the link is sent after it), so the form cannot be used to list
people. ``GET /sign-in/<token>`` shows one button; pressing it (``POST``) uses the link up and
begins a session (cookie HttpOnly, SameSite=Lax, Secure on https). Both forms are CSRF-protected
by a double-submit cookie (there is no session yet).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from threading import Lock, Thread
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from flows.engine.links import LinkRefused
from flows.ledger import once
from flows.ledger.vocabulary import RecordKind
from flows.web.app import CSRF_COOKIE, Web
from flows.web.identity import client_of
from flows.web.pages import html, notice
from flows.web.sessions import COOKIE, SignInUsed
from notifications import Message, deliver, recipients

log = logging.getLogger("sop.web")
router = APIRouter(include_in_schema=False)
#: one sign-in link per person per this many (wall) seconds, whichever API process the form reaches (the ledger
#: remembers: ``flows.ledger.once``): the form cannot flood anyone's phone
RESEND_AFTER_S = 30.0
_lock = Lock()
#: sign-in links one address may ask for per minute (per API process): the form cannot page every person
ASKS_PER_MINUTE = 30
_asked: dict[str, list[float]] = {}


def _too_many(client: str) -> bool:
    """Whether ``client`` asked for :data:`ASKS_PER_MINUTE` links in the last minute already (and count this one)."""
    now = time.monotonic()
    with _lock:
        if len(_asked) > 10_000:  # a flood of addresses: forget those that asked over a minute ago
            for old in [c for c, times in _asked.items() if now - times[-1] > 60]:
                del _asked[old]
        recent = [t for t in _asked.get(client, []) if now - t < 60]
        if len(recent) >= ASKS_PER_MINUTE:
            _asked[client] = recent
            return True
        _asked[client] = [*recent, now]
        return False


def _web(request: Request) -> Web:
    return request.app.state.web


def _next(value: str | None) -> str:
    """Only a path of this site (``/runs/x``), never another origin."""
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value


def _page(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """A page of signing in with a form: its CSRF token in the page and in a cookie (double submit: no session
    yet), the browser's token kept when it has one."""
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = html(request, template, status=status, csrf=token, **context)
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_web(request).secure, path="/")
    return response


def _csrf_ok(request: Request, form: Any) -> bool:
    """Whether a form posted carries the token of its page's cookie (:func:`_page`)."""
    expected = request.cookies.get(CSRF_COOKIE) or ""
    return bool(expected) and hmac.compare_digest(expected, str(form.get("csrf") or ""))


def _form(request: Request, *, status: int = 200, sent: bool = False, error: str | None = None,
          who: str = "") -> Response:
    return _page(request, "sign_in.html.j2", status=status, sent=sent, error=error, who=who,
                 next=_next(request.query_params.get("next")))


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _form(request)


@router.post("/sign-in")
async def send_sign_in(request: Request) -> Response:
    web = _web(request)
    form = await request.form(max_files=0, max_fields=10)
    if not _csrf_ok(request, form):
        return _form(request, status=403, error="This form has expired: try again.")
    who = str(form.get("who") or "").strip()[:200]
    if not who:
        return _form(request, status=422, error="Write your person id or your e-mail.")
    client = client_of(request) or "-"
    if _too_many(client):
        log.warning("event=sign_in_refused reason=too_many client=%s", client)
        return _form(request, status=429, who=who,
                     error=f"Too many sign-in links asked from your address ({ASKS_PER_MINUTE} a minute): wait a minute.")
    person = await run_in_threadpool(_person_of, web, who)
    if person is not None:  # sent after the answer: its time (seconds on a slow channel) tells no one it is a person
        # a thread of its own (the asks are bounded per address); a daemon: a stopping API does not wait on it
        Thread(target=_send_logged, args=(web, person, _next(str(form.get("next") or "/"))), name="sign-in",
               daemon=True).start()
    return _form(request, sent=True, who=who)


def _send_logged(web: Web, person: str, next_path: str) -> None:
    try:
        _send(web, person, next_path)
    except Exception:  # a thread of its own: nobody else would see it
        log.exception("event=sign_in_send_failed person=%s", person)


def _person_of(web: Web, who: str) -> str | None:
    people = web.site.people
    if who in people:
        return who
    lowered = who.lower()
    return next((pid for pid, p in people.items() if p.email and p.email.lower() == lowered), None)


def sign_in_key(person: str) -> str:
    """The ``once_keys`` key that holds back a second sign-in link to ``person`` for :data:`RESEND_AFTER_S`."""
    return f"sign-in:{person}"


def _send(web: Web, person: str, next_path: str) -> None:
    now = datetime.now(UTC)
    if not once.take(web.engine.ledger, sign_in_key(person), until=now + timedelta(seconds=RESEND_AFTER_S), now=now):
        log.info("event=sign_in_throttled person=%s", person)
        return
    link = web.links.sign_in_link(person)
    if next_path != "/":
        link += "?" + urlencode({"next": next_path})
    minutes = max(1, int(web.links.sign_in_ttl.total_seconds() // 60))
    name = web.site.people[person].name
    message = Message(
        title="Sign in to SOPs",
        body=(f"{name}, open this link to sign in:\n\n{link}\n\nIt works once, for {minutes} minutes, and only for "
              "you. If you did not ask to sign in, ignore this message."),
        notify_type="info", priority=4, kind="sign_in")
    results = deliver(message, recipients([person], web.site), inbox_dir=web.site.settings.inbox_dir, retries=1)
    with web.engine.ledger.transaction() as tx:
        tx.append(RecordKind.SIGN_IN_SENT, actor=person, delivered=sum(1 for r in results if r.ok),
                  destinations=len(results))
    log.info("event=sign_in_sent person=%s delivered=%d", person, sum(1 for r in results if r.ok))


@router.get("/sign-in/{token}")
def sign_in_page(request: Request, token: str) -> Response:
    """The link opened: a page with one button that uses it (a POST). Opening it uses nothing: mail scanners and
    link previews (Outlook's Safe Links, a chat's unfurl) fetch every link in a message, and one that signed in on
    GET was spent (and a session begun) before its person could tap it."""
    web = _web(request)
    try:
        claim = web.links.read_sign_in(token)  # a leaver's is refused there
    except LinkRefused as exc:
        return notice(request, "This sign-in link cannot be used", f"{exc}", 403,
                      action=("/sign-in", "Send me a new link"))
    query = request.url.query
    response = _page(request, "sign_in_confirm.html.j2", who=web.site.people[claim.person].name,
                     action=f"/sign-in/{token}" + (f"?{query}" if query else ""))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/sign-in/{token}")
async def sign_in(request: Request, token: str) -> Response:
    """The button pressed: the link is used up and a session begins (CSRF-checked by the page's cookie)."""
    web = _web(request)
    form = await request.form(max_files=0, max_fields=10)
    if not _csrf_ok(request, form):
        return notice(request, "This page has expired", "Open the link from your message again.", 403,
                      action=("/sign-in", "Send me a new link"))
    try:
        claim = await run_in_threadpool(web.links.read_sign_in, token)
        cookie, session = await run_in_threadpool(
            lambda: web.sessions.begin(claim.person, "sign-in", nonce=claim.nonce, client=client_of(request)))
    except (LinkRefused, SignInUsed) as exc:
        return notice(request, "This sign-in link cannot be used", f"{exc}", 403,
                      action=("/sign-in", "Send me a new link"))
    request.state.new_cookie = (cookie, session)
    log.info("event=signed_in person=%s via=sign-in", claim.person)
    return web.finish(request, RedirectResponse(_next(request.query_params.get("next")), status_code=303))


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    web = _web(request)
    form = await request.form(max_files=0, max_fields=10)
    session = await run_in_threadpool(web.session, request)
    if session is not None and session.csrf_ok(str(form.get("csrf") or "")):
        await run_in_threadpool(web.sessions.end, session)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
