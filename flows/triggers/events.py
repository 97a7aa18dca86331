"""Parse the generic event (``POST /v1/events``): a name, a key, flat values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.triggers.model import Event

NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventPayload(_Strict):
    """A generic event: ``{"name": "platform.algorithm_changed", "key": "douyin", "values": {...}}``."""

    name: str = Field(pattern=NAME, max_length=200, description="the event name SOP triggers listen for")
    key: str | None = Field(default=None, max_length=300, description="what the event is about (trigger.key)")
    values: dict[str, str | int | float | bool | None] = Field(default_factory=dict,
                                                               description="flat values (trigger.<name>)")


def parse_event(body: Any) -> Event:
    """Validate a decoded body as an event (ValidationError names the field)."""
    payload = EventPayload.model_validate(body)
    return Event(name=payload.name, key=payload.key, values=dict(payload.values))
