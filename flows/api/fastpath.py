"""The webhook fast path: the webhook pipeline served in front of FastAPI's routing.

An alert storm is the API's hardest load, and most of a webhook's cost was not ours:
FastAPI's routing, dependency solving and exception middleware took about as long as the
ledger transaction itself. :class:`WebhookFastPath` answers ``POST`` on the webhooks'
paths itself, by the same :class:`~flows.api.webhooks.WebhookPipeline` the documented
routes call, so it has the same stages, the same refusals and the same answers; it only
skips FastAPI on the way in and out. Any other request passes through to FastAPI
untouched. ``create_app(..., fast_path=False)`` leaves it out, and the routes answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from flows.api import errors
from flows.api.errors import ApiError
from flows.api.webhooks import Webhook, WebhookPipeline


class WebhookFastPath:
    """ASGI middleware answering ``POST`` on the ``webhooks``' paths by ``pipeline``; the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, pipeline: WebhookPipeline, webhooks: Iterable[Webhook[Any]]):
        self.app = app
        self.pipeline = pipeline
        self.webhooks = {webhook.path: webhook for webhook in webhooks}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        webhook = self.webhooks.get(scope["path"]) if scope["type"] == "http" else None
        if webhook is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            answer = await self.pipeline.answer(webhook, request)
        except ApiError as error:  # what FastAPI's exception handler does for the routes (errors.install)
            await errors.refused(request, error)(scope, receive, send)
            return
        # the bytes FastAPI's JSONResponse would send for the route's answer
        body = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
