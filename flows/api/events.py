"""The generic event: ``{"name", "key", "values"}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from flows.api import docs
from flows.api.auth import Principal, raw_body, require
from flows.api.errors import parse_body
from flows.triggers import events
from flows.triggers.model import summary

router = APIRouter(prefix="/v1/events", tags=["triggers"])


@router.post("", openapi_extra=docs.body(events.EventPayload, ("monitor",)))
async def post_event(
    request: Request, principal: Principal = require("monitor"), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """An event: SOPs whose ``event:`` trigger has this name (and whose ``match`` fits) start or attach. Roles: monitor."""
    event = events.event(parse_body(raw, events.EventPayload))
    outcomes = await request.app.state.intake_thread.run(request.app.state.intake.event, event, principal.actor)
    return summary(outcomes)
