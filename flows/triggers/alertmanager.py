"""Parse Alertmanager's webhook payload (version 4) into alerts.

The shape is Alertmanager's ``webhook_config`` body (``notify/webhook``): a group of alerts
with ``status``, ``labels``, ``annotations``, ``startsAt``/``endsAt``, ``fingerprint``. Fields
Alertmanager may add later are ignored; the ones we read are checked, and a bad one is
named by its path (``alerts.3.labels``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from flows.triggers.model import Alert


class _Lenient(BaseModel):
    # fields a sender may add later are ignored; numbers must be finite (Grafana's ``values``: "NaN" as text too)
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


def _timestamp(value: str | None) -> str | None:
    """An RFC 3339 time as sent (Alertmanager's nanoseconds included), kept as text; anything else is refused."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():  # a date alone, a week date, no offset
        raise ValueError(f"expected an RFC 3339 time such as 2026-12-06T08:00:00Z, got {value[:40]!r}")
    return value


Timestamp = Annotated[str | None, AfterValidator(_timestamp)]


class AlertmanagerAlert(_Lenient):
    """One alert of the group."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Timestamp = Field(default=None, alias="startsAt")
    ends_at: Timestamp = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str = ""


class AlertmanagerPayload(_Lenient):
    """The body Alertmanager posts to a webhook receiver."""

    version: Literal["4"] = Field(description='webhook payload version; Alertmanager sends "4"')
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert]


def alerts(payload: AlertmanagerPayload) -> list[Alert]:
    """The payload's alerts in the common shape, in the order sent."""
    return [
        Alert(
            source="alertmanager",
            status=a.status,
            labels=a.labels,
            annotations=a.annotations,
            fingerprint=a.fingerprint,
            starts_at=a.starts_at,
            ends_at=_ends(a.ends_at),
            generator_url=a.generator_url or None,
            receiver=payload.receiver or None,
        )
        for a in payload.alerts
    ]


def parse(body: dict[str, Any]) -> list[Alert]:
    """Validate a decoded body and return its alerts (pydantic ValidationError names the field)."""
    return alerts(AlertmanagerPayload.model_validate(body))


def _ends(value: str | None) -> str | None:
    # Go's zero time means "not ended yet"
    return None if not value or value.startswith("0001-01-01") else value
