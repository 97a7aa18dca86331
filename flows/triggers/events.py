"""Parse the generic event (``POST /v1/events``): a name, a key, flat values."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from flows.triggers.model import Event

NAME = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"expected a string, number, boolean or null, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


#: a flat value (events carry no nested objects: matchers and templates read them as text)
Scalar = Annotated[Any, AfterValidator(_scalar)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EventPayload(_Strict):
    """A generic event: ``{"name": "platform.algorithm_changed", "key": "douyin", "values": {...}}``."""

    name: str = Field(pattern=NAME, max_length=200, description="the event name SOP triggers listen for")
    key: str | None = Field(default=None, max_length=300, description="what the event is about (trigger.key)")
    values: dict[str, Scalar] = Field(default_factory=dict, description="flat values (trigger.<name>)")


def event(payload: EventPayload) -> Event:
    """The payload as an event."""
    return Event(name=payload.name, key=payload.key, values=dict(payload.values))


def parse(body: Any) -> Event:
    """Validate a decoded body as an event (ValidationError names the field)."""
    return event(EventPayload.model_validate(body))
