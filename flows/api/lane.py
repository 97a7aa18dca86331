"""The intake lane: alert webhooks served in front of FastAPI's routing, on one intake thread.

An alert storm is the API's hardest load, and most of a webhook's cost was not ours:
FastAPI's routing, dependency solving and exception middleware took about as long as the
ledger transaction itself, and each request hopped to a thread of a pool where it then
queued for the ledger's single writer anyway. The lane answers ``POST`` on the webhook
paths itself with the same steps and the same answers as the routes in
:mod:`flows.api.alerts` (authenticate, authorize, verify the signature, parse, hand the
alerts to the intake), and runs every intake on one thread (:class:`IntakeThread`), where
they queue in arrival order without contending for a lock. Any other request passes
through to FastAPI untouched. The routes stay the documented interface (OpenAPI) and serve
when the lane is off (``create_app(..., lane=False)``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from flows.api import errors
from flows.api.errors import ApiError


class Lane:
    """ASGI middleware serving ``POST`` on the paths of ``handlers``; everything else goes to ``app``.

    ``handlers`` maps a path to ``async handle(state, principal, raw) -> dict``, the same
    function its FastAPI route calls, so both answer alike.
    """

    def __init__(self, app: ASGIApp, state: Any, handlers: dict[str, Any], roles: tuple[str, ...]):
        self.app = app
        self.state = state
        self.handlers = handlers
        self.roles = roles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            headers = Headers(scope=scope)
            gate = self.state.gate
            token = gate.identify(headers.get("authorization"))
            scope.setdefault("state", {})["principal"] = token.principal  # for the refusal's log line
            gate.authorize(token, self.roles)
            raw = await _body(receive)
            if token.hmac is not None:
                gate.verify_signature(token, headers, raw)
            answer = await handler(self.state, token.principal, raw)
        except ApiError as error:
            await errors.refused(Request(scope, receive), error)(scope, receive, send)
            return
        body = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()  # as JSONResponse
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client closed the connection before sending the whole body", "body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
