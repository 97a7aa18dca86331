"""The webhook pipeline: what answers monitoring's ``POST``, one small stage per method.

    stage             what it does                                          refuses     with
    authenticate      bearer token → a principal whose role and sources     401 / 403   auth.Gate
                      may post here
    read body         the raw bytes (BodyLimit, in front, has refused 413)  400
    verify signature  the token's HMAC over the body, when it has one       401         auth.Gate
    parse             body → alerts, an event or samples                    400 / 422   flows.triggers parsers
    intake            route → dedup → start, on the intake thread           422         flows.triggers.intake
    answer            counts and what became of each signal (200)                       Webhook.summarize

:meth:`WebhookPipeline.answer` composes the stages, in that order, in one place; a refusal
(:class:`ApiError`) at any stage is the answer. A :class:`Webhook` holds what differs from
one endpoint to the next: its path, who may post, how its body parses, which intake takes
it and what the answer counts. Each endpoint's module (``alerts``, ``events``,
``metrics``) declares its webhooks next to its documented route.

Two doors lead into the same pipeline, so they answer alike: the fast path
(:mod:`flows.api.fastpath`, in front of FastAPI's routing, for speed under a storm) and the
documented FastAPI routes (OpenAPI at /docs, and the only door when the app is built with
``create_app(..., fast_path=False)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from flows.api.auth import ActiveToken, Gate, Principal
from flows.api.errors import ApiError
from flows.api.intake_thread import IntakeThread
from flows.triggers.intake import Intake
from flows.triggers.model import Disposition, SignalRefused

#: what a webhook's body parses into: a list of alerts, an event, a list of samples
Signals = TypeVar("Signals")
MONITOR = ("monitor",)


@dataclass(frozen=True)
class Webhook(Generic[Signals]):
    """One monitoring endpoint: what the pipeline's stages need to know about it.

    ``parse(raw)`` refuses a bad body with a located 400 / 422; ``intake`` is the
    :class:`Intake` method that takes the signals (``Intake.alerts``…); ``summarize`` makes
    the answer's body from the signals and what became of them.
    """

    path: str
    #: which monitoring endpoint it is, as a monitor token's ``sources`` name it (config.MONITOR_SOURCES)
    source: str
    parse: Callable[[bytes], Signals]
    intake: Callable[[Intake, Signals, str], list[Disposition]]
    summarize: Callable[[Signals, list[Disposition]], dict[str, Any]]
    roles: tuple[str, ...] = MONITOR


class WebhookPipeline:
    """authenticate → read body → verify signature → parse → intake → answer, for any :class:`Webhook`."""

    def __init__(self, gate: Gate, intake: Intake, thread: IntakeThread):
        self.gate = gate
        self.trigger_intake = intake
        self.thread = thread

    async def answer(self, webhook: Webhook[Signals], request: Request) -> dict[str, Any]:
        """The body of the 200 answer to ``POST webhook.path``; raises the refusal (:class:`ApiError`) otherwise."""
        with self.thread.serving():  # a lone call of the intake thread lingers for this one's
            token = self.authenticate(webhook, request)
            raw = await self.read_body(request)
            await self.verify_signature(token, request, raw)
            signals = self.parse(webhook, raw)
            dispositions = await self.intake(webhook, signals, token.principal)
            return webhook.summarize(signals, dispositions)

    def authenticate(self, webhook: Webhook[Any], request: Request) -> ActiveToken:
        """The request's token, its role and its sources ones that may post here (401 / 403); before anything reads
        the body."""
        token = self.gate.admit(request, webhook.roles)
        self.gate.authorize_source(token, webhook.source)
        return token

    @staticmethod
    async def read_body(request: Request) -> bytes:
        """The body as sent (``BodyLimit``, in front of both doors, has already refused one that is too large)."""
        try:
            return await request.body()
        except ClientDisconnect:
            raise ApiError(400, "the client closed the connection before sending the whole body", "body") from None

    async def verify_signature(self, token: ActiveToken, request: Request, raw: bytes) -> None:
        """401 unless the body carries the token's HMAC signature (nothing to check for a token without one); off the
        event loop, as whether it was taken already may be the database's to say."""
        if token.hmac is not None:
            await run_in_threadpool(self.gate.verify_signature, token, request.headers, raw)

    @staticmethod
    def parse(webhook: Webhook[Signals], raw: bytes) -> Signals:
        """The body as signals; a 400 (not JSON) or 422 (not the payload) naming the field."""
        return webhook.parse(raw)

    async def intake(self, webhook: Webhook[Signals], signals: Signals, principal: Principal) -> list[Disposition]:
        """Route → dedup → start (:class:`Intake`), on the intake thread, which commits what queued up together.

        Signals the intake refuses as a whole (:class:`SignalRefused`: nothing stored) are a 422 naming the field.
        """
        try:
            return await self.thread.run(webhook.intake, self.trigger_intake, signals, principal.actor)
        except SignalRefused as exc:
            raise ApiError(422, f"body.{exc.field}: {exc.message}", f"body.{exc.field}") from None
