"""The HTTP API (FastAPI): runs for people, webhooks and metrics for monitoring, OpenAPI at /docs.

``create_app(engine)`` builds it around one engine; ``sop serve`` runs it in a thread
(``flows.runtime.serve``), and ``uvicorn --factory flows.runtime.web:from_environment`` runs it alone
(team mode: any number of API processes on one database — dedup is the database's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flows.api import alerts, docs, errors, events, holds, metrics, runs
from flows.api.auth import READERS, Gate, require
from flows.api.errors import ApiError
from flows.api.fastpath import WebhookFastPath
from flows.api.intake_thread import IntakeThread
from flows.api.launches import LaunchQueue
from flows.api.stopping import CutAtStop
from flows.api.webhooks import WebhookPipeline
from flows.engine.transitions import Engine
from flows.language.config import Site
from flows.triggers.intake import Intake
from flows.web.routes import mount as mount_pages

log = logging.getLogger("sop.api")
#: the webhooks the fast path serves (each module's routes document its own)
WEBHOOKS = (alerts.ALERTMANAGER, alerts.GRAFANA, events.EVENT, metrics.SAMPLES)

DESCRIPTION = """\
Start and follow SOP runs, report on human steps, and feed triggers from monitoring.

Every endpoint needs `Authorization: Bearer <token>`; tokens are named in `config/`
(`tokens:`) with the environment variable holding each secret, and carry one role:
**operator** (start, cancel, report), **responder** (report on steps assigned to its person
or their roles), **auditor** (read), **monitor** (alerts, events, metrics). A refusal is a
4xx with `{"error", "field", "problems"}` naming what to fix.

An operator or responder token acts as its `person` in `config/`: what it starts, reports
and cancels is recorded as that person's, `via: api`, with the token's name. An operator
reporting for someone else names a person of `config/` in the report's `actor`; the ledger
keeps both (`li-wei for wang-fang`), and the four-eyes rule applies to both. A responder
reports only as its own person.
"""


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with a 413 before any handler reads them (Content-Length or streamed).

    The people's pages (every path outside ``/v1/``) take evidence files: their bodies may be
    ``page_max_bytes`` (the site's ``web.upload_max_bytes`` and room for the form around it).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, page_max_bytes: int | None = None):
        self.app = app
        self.api_max_bytes = max_bytes
        self.page_max_bytes = page_max_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.api_max_bytes if scope["path"].startswith("/v1/") else self.page_max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        from starlette.requests import Request

        request = Request(scope, receive)
        if errors.wants_a_page(request, posted=True):  # a person's form with a file too large: a page that says so
            answer = _page(request, "File too large", f"What you sent is larger than {limit / 1e6:.1f} MB, more than "
                           "a page takes (settings.web.upload_max_bytes and the form around it) and nothing was recorded. Go back, attach a "
                           "smaller file (or a link to where it is kept) and send again.", 413)
        else:
            answer = errors.refused(request, ApiError(
                413, f"the request body is larger than {limit} bytes (settings.api.max_body_bytes); send smaller "
                "batches", "body"))
        await answer(scope, receive, send)


def _page(request: Any, title: str, message: str, status: int) -> Any:
    """A page that only says something (a browser's request refused before any route read it)."""
    from flows.web.pages import notice

    return notice(request, title, message, status, action=("/", "Go to your steps"))


class NoNulInUrl:
    """Refuse a path or query holding NUL (``%00``) with a 400 before any route reads it: PostgreSQL cannot
    compare or store it (a run id of ``%00`` was a 500 there). Bodies are checked by :func:`errors.parse_json`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = "path" if "\x00" in scope["path"] else None
            if where is None and b"%00" in scope.get("query_string", b""):
                where = "query"
            if where is not None:
                from starlette.requests import Request

                error = ApiError(400, f"the {where} holds a NUL character (%00), which no run, step or SOP has", where)
                request = Request(scope, receive)
                if errors.wants_a_page(request):  # a person's browser: a page that says so, not the API's JSON
                    answer: Any = _page(request, "Bad address", f"This address's {where} holds a NUL character "
                                        "(%00), which no run, step or SOP has: check the link.", 400)
                else:
                    answer = errors.refused(request, error)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    engine: Engine,
    site: Site | None = None,
    *,
    env: Mapping[str, str] | None = None,
    launch: Callable[[str], None] | None = None,
    fast_path: bool = True,
) -> FastAPI:
    """The API around ``engine``. Tokens are read from ``env`` (default: the process environment).

    ``launch(run_id)`` creates a new run's flow run; by default a background queue does it
    when the engine has a launcher (never on the request path), and nothing when it has none.
    ``fast_path`` serves the webhooks in front of FastAPI's routing (:mod:`flows.api.fastpath`); either way
    they are answered by the one webhook pipeline (:mod:`flows.api.webhooks`).
    """
    site = site or engine.site
    app = FastAPI(title="SOPs as code", version="1", description=DESCRIPTION, docs_url=None, redoc_url=None)
    queue = LaunchQueue(engine) if launch is None and engine.launcher is not None else None
    app.state.engine = engine
    app.state.gate = Gate(site, env, ledger=engine.ledger)  # signatures taken: remembered for every API process
    app.state.launch = launch or (queue.submit if queue else (lambda run_id: None))
    app.state.launches = queue
    app.state.intake = Intake(engine, launch=app.state.launch)
    # one transaction for what queued up together where a commit's cost is worth sharing: SQLite, and PostgreSQL
    # when a commit waits for the disk (Ledger.groups_commits); else each call alone (a repeat: one round trip)
    app.state.intake_thread = IntakeThread(engine.ledger, one_transaction=engine.ledger.groups_commits)
    app.state.webhooks = WebhookPipeline(app.state.gate, app.state.intake, app.state.intake_thread)
    if fast_path:
        app.add_middleware(WebhookFastPath, pipeline=app.state.webhooks, webhooks=WEBHOOKS)
    app.add_middleware(BodyLimit, max_bytes=site.settings.api.max_body_bytes,  # before the fast path
                       page_max_bytes=site.settings.web.upload_max_bytes + 100_000)
    app.add_middleware(NoNulInUrl)
    app.add_middleware(errors.Faults)  # what no handler expected is answered, not a dropped connection
    app.add_middleware(CutAtStop)  # outermost: a request the server's stop cancelled, in one line
    errors.install(app)
    for module in (runs, holds, alerts, events, metrics):
        app.include_router(module.router)
    _include_audit(app)
    docs.serve_offline(app)
    mount_pages(app, engine, env)

    @app.get("/healthz", tags=["health"], include_in_schema=False)
    def healthz() -> dict[str, Any]:
        """Liveness for load balancers (no token, no data)."""
        return {"ok": True}

    app.openapi = docs.with_body_schemas(app)  # type: ignore[method-assign]
    return app


def _include_audit(app: FastAPI) -> None:
    """The audit endpoints (``flows.api.audit``) when that module exists, behind the same tokens."""
    try:
        from flows.api.audit import router as audit_router
    except ImportError:
        return
    app.include_router(audit_router, dependencies=[require(*READERS)])


def close(app: FastAPI) -> None:
    """Finish queued intake and launches (call when the server stops)."""
    app.state.intake_thread.close()
    if app.state.launches is not None:
        app.state.launches.close()
