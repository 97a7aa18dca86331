"""Alert webhooks: Alertmanager (payload version 4) and Grafana alerting.

In a running API these paths are served by the intake lane (:mod:`flows.api.lane`) in
front of FastAPI's routing; the routes below document them (OpenAPI) and serve when the
lane is off. Both call :func:`accept`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from flows.api import docs
from flows.api.auth import Principal, raw_body, require
from flows.api.errors import from_validation, parse_json
from flows.triggers import alertmanager, grafana
from flows.triggers.model import summary

router = APIRouter(prefix="/v1/alerts", tags=["triggers"])
ROLES = ("monitor",)


def _parse(parser: Any, raw: bytes) -> Any:
    try:
        return parser(parse_json(raw))
    except ValidationError as exc:
        raise from_validation(exc) from None


async def _accept(parser: Any, state: Any, principal: Principal, raw: bytes) -> dict[str, Any]:
    alerts = _parse(parser, raw)
    outcomes = await state.intake_thread.run(state.intake.alerts, alerts, principal.actor)
    return {"alerts": len(alerts), **summary(outcomes)}


async def accept_alertmanager(state: Any, principal: Principal, raw: bytes) -> dict[str, Any]:
    """An Alertmanager webhook body → outcomes (the answer of ``POST /v1/alerts/alertmanager``)."""
    return await _accept(alertmanager.parse, state, principal, raw)


async def accept_grafana(state: Any, principal: Principal, raw: bytes) -> dict[str, Any]:
    """A Grafana webhook body → outcomes (the answer of ``POST /v1/alerts/grafana``)."""
    return await _accept(grafana.parse, state, principal, raw)


#: what the intake lane serves, by path
LANE = {f"{router.prefix}/alertmanager": accept_alertmanager, f"{router.prefix}/grafana": accept_grafana}


@router.post("/alertmanager", openapi_extra=docs.body(alertmanager.AlertmanagerPayload, ROLES))
async def alertmanager_webhook(
    request: Request, principal: Principal = require(*ROLES), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Alertmanager's webhook (``webhook_configs``): firing alerts start or attach runs, resolved ones are recorded.

    Roles: monitor. Point a receiver here with ``http_config.authorization.credentials`` set to the token.
    """
    return await accept_alertmanager(request.app.state, principal, raw)


@router.post("/grafana", openapi_extra=docs.body(grafana.GrafanaPayload, ROLES))
async def grafana_webhook(
    request: Request, principal: Principal = require(*ROLES), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Grafana alerting's webhook contact point (legacy dashboard alerts are taken too). Roles: monitor."""
    return await accept_grafana(request.app.state, principal, raw)
