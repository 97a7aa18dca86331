"""Alert webhooks: Alertmanager (payload version 4) and Grafana alerting."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from flows.api import docs
from flows.api.auth import Principal, raw_body, require
from flows.api.errors import from_validation, parse_json
from flows.triggers import alertmanager, grafana
from flows.triggers.model import summary

router = APIRouter(prefix="/v1/alerts", tags=["triggers"])


def _parse(parser: Any, raw: bytes) -> Any:
    try:
        return parser(parse_json(raw))
    except ValidationError as exc:
        raise from_validation(exc) from None


@router.post("/alertmanager", openapi_extra=docs.body(alertmanager.AlertmanagerPayload, ("monitor",)))
async def alertmanager_webhook(
    request: Request, principal: Principal = require("monitor"), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Alertmanager's webhook (``webhook_configs``): firing alerts start or attach runs, resolved ones are recorded.

    Roles: monitor. Point a receiver here with ``http_config.authorization.credentials`` set to the token.
    """
    alerts = _parse(alertmanager.parse, raw)
    outcomes = await run_in_threadpool(request.app.state.intake.alerts, alerts, principal.actor)
    return {"alerts": len(alerts), **summary(outcomes)}


@router.post("/grafana", openapi_extra=docs.body(grafana.GrafanaPayload, ("monitor",)))
async def grafana_webhook(
    request: Request, principal: Principal = require("monitor"), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Grafana alerting's webhook contact point (legacy dashboard alerts are taken too). Roles: monitor."""
    alerts = _parse(grafana.parse, raw)
    outcomes = await run_in_threadpool(request.app.state.intake.alerts, alerts, principal.actor)
    return {"alerts": len(alerts), **summary(outcomes)}
