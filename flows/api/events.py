"""The generic event: ``{"name", "key", "values"}``, a :class:`~flows.api.webhooks.Webhook` like the alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flows.api import docs
from flows.api.auth import BEARER
from flows.api.errors import parse_body
from flows.api.webhooks import Webhook
from flows.triggers import events
from flows.triggers.intake import Intake
from flows.triggers.model import Disposition, Event, summary

router = APIRouter(prefix="/v1/events", tags=["triggers"])


def _parse(raw: bytes) -> Event:
    return events.event(parse_body(raw, events.EventPayload, keys_once=False))


def _answer(event: Event, dispositions: list[Disposition]) -> dict[str, Any]:
    return summary(dispositions)


EVENT = Webhook(router.prefix, "events", _parse, Intake.event, _answer)


@router.post("", openapi_extra=docs.body(events.EventPayload, EVENT.roles), dependencies=[BEARER])
async def post_event(request: Request) -> dict[str, Any]:
    """An event: SOPs whose ``event:`` trigger has this name (and whose ``match`` fits) start or attach. Roles: monitor
    (its ``sources`` naming events, or none)."""
    return await request.app.state.webhooks.answer(EVENT, request)
