"""Parse Grafana's alerting webhook into alerts.

Grafana (8+, unified alerting) posts an Alertmanager-like group with Grafana's own extras:
``orgId``, ``title``, ``state``, ``message`` and, per alert, ``values``, ``valueString``,
``silenceURL``, ``dashboardURL``, ``panelURL``. Legacy dashboard alerting (Grafana ≤ 8)
posted one rule per body (``ruleName``, ``state``, ``tags``, ``evalMatches``); it is taken
too, as one alert named after the rule.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flows.triggers.alertmanager import AlertmanagerAlert, _Lenient
from flows.triggers.model import Alert


class GrafanaAlert(AlertmanagerAlert):
    """One alert of a Grafana notification: Alertmanager's alert plus Grafana's links."""

    silence_url: str | None = Field(default=None, alias="silenceURL")
    dashboard_url: str | None = Field(default=None, alias="dashboardURL")
    panel_url: str | None = Field(default=None, alias="panelURL")
    values: dict[str, float | int | None] | None = None
    value_string: str | None = Field(default=None, alias="valueString")


class GrafanaPayload(_Lenient):
    """The body of Grafana's webhook contact point (unified alerting)."""

    receiver: str = ""
    status: Literal["firing", "resolved"]
    org_id: int | None = Field(default=None, alias="orgId")
    alerts: list[GrafanaAlert]
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    version: str = "1"
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    title: str | None = None
    state: str | None = None
    message: str | None = None


class LegacyMatch(_Lenient):
    metric: str = ""
    value: float | None = None
    tags: dict[str, str] | None = None


class LegacyGrafanaPayload(_Lenient):
    """Grafana's legacy (dashboard) alerting notification: one rule per body."""

    rule_name: str = Field(alias="ruleName", min_length=1)
    rule_id: int | None = Field(default=None, alias="ruleId")
    state: Literal["alerting", "ok", "no_data", "paused", "pending"]
    title: str | None = None
    message: str | None = None
    rule_url: str | None = Field(default=None, alias="ruleUrl")
    tags: dict[str, str] = Field(default_factory=dict)
    eval_matches: list[LegacyMatch] = Field(default_factory=list, alias="evalMatches")


def alerts(payload: GrafanaPayload) -> list[Alert]:
    """The payload's alerts in the common shape, in the order sent."""
    out = []
    for a in payload.alerts:
        annotations = dict(a.annotations)
        for key, value in (
            ("silence_url", a.silence_url),
            ("dashboard_url", a.dashboard_url),
            ("panel_url", a.panel_url),
            ("value_string", a.value_string),
        ):
            if value:
                annotations.setdefault(key, value)
        out.append(
            Alert(
                source="grafana",
                status=a.status,
                labels=a.labels,
                annotations=annotations,
                fingerprint=a.fingerprint,
                starts_at=a.starts_at,
                ends_at=None if not a.ends_at or a.ends_at.startswith("0001-01-01") else a.ends_at,
                generator_url=a.generator_url or None,
                values=a.values,
                receiver=payload.receiver or None,
            )
        )
    return out


def legacy_alerts(payload: LegacyGrafanaPayload) -> list[Alert]:
    """A legacy notification as one alert: ``alertname`` = rule name, the rule's tags as labels."""
    if payload.state not in ("alerting", "ok"):
        return []  # no_data / paused / pending start nothing
    labels = {"alertname": payload.rule_name, **payload.tags}
    values = {m.metric or f"match{i}": m.value for i, m in enumerate(payload.eval_matches)}
    annotations = {k: v for k, v in (("summary", payload.title), ("description", payload.message)) if v}
    return [
        Alert(
            source="grafana",
            status="firing" if payload.state == "alerting" else "resolved",
            labels=labels,
            annotations=annotations,
            generator_url=payload.rule_url,
            values=values or None,
        )
    ]


def parse(body: dict[str, Any]) -> list[Alert]:
    """Validate a decoded body (either format) and return its alerts; ValidationError names the field."""
    if isinstance(body, dict) and "alerts" not in body and "ruleName" in body:
        return legacy_alerts(LegacyGrafanaPayload.model_validate(body))
    return alerts(GrafanaPayload.model_validate(body))
