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

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from flows.api import errors
from flows.api.errors import ApiError

log = logging.getLogger("sop.api")


class IntakeThread:
    """One thread running intake calls in arrival order; ``await run(fn, *args)`` from the event loop.

    With a ledger, the calls queued together (at most ``max_batch``) run in one ledger
    transaction (:meth:`Ledger.batch`, group commit); when any of them raises, the batch is
    rolled back and each call runs again on its own, so one bad call fails only itself.
    """

    def __init__(self, ledger: Any = None, max_batch: int = 8, name: str = "api-intake"):
        self.ledger = ledger
        self.max_batch = max_batch if ledger is not None else 1
        self.largest_batch = 0  # the most calls that shared one transaction so far
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the intake thread and return (or raise) what it did."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put(_Call(fn, args, future))
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the calls already queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            calls = [first]
            while len(calls) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                calls.append(more)
            if len(calls) > 1 and self._together(calls):
                continue
            for call in calls:
                call.run()
                call.settle()

    def _together(self, calls: list[_Call]) -> bool:
        """Run ``calls`` in one batch and settle them; False (nothing settled) when any raised."""
        self.largest_batch = max(self.largest_batch, len(calls))
        try:
            with self.ledger.batch():
                for call in calls:
                    call.run()
                    if call.error is not None:
                        raise _Retry
        except Exception as exc:  # a call raised, or the commit itself failed: run each alone, each says why
            if not isinstance(exc, _Retry):
                log.warning("event=intake_batch_failed calls=%d (running them one by one)", len(calls), exc_info=True)
            for call in calls:
                call.error = None
            return False
        _settle_all(calls)
        return True


class _Retry(Exception):
    """A call of a batch raised: roll the batch back and run its calls alone."""


class _Call:
    """One queued intake call and the future of the request awaiting it."""

    __slots__ = ("fn", "args", "future", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]):
        self.fn, self.args, self.future = fn, args, future
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except Exception as exc:  # handed to the awaiting request, which answers for it
            self.error = exc

    def settle(self) -> None:
        self.future.get_loop().call_soon_threadsafe(_settle, self.future, self.result, self.error)


def _settle_all(calls: list[_Call]) -> None:
    """Settle a batch's calls with one wake-up of the event loop (each wake-up is a write to its pipe)."""
    loop = calls[0].future.get_loop()
    if any(call.future.get_loop() is not loop for call in calls):
        for call in calls:
            call.settle()
        return
    loop.call_soon_threadsafe(_settle_each, [(call.future, call.result, call.error) for call in calls])


def _settle_each(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in settled:
        _settle(future, result, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():  # the client went away; the intake itself was done and is recorded
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


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
