"""Alert webhooks: Alertmanager (payload version 4) and Grafana alerting.

Each is a :class:`~flows.api.webhooks.Webhook` answered by the webhook pipeline
(:mod:`flows.api.webhooks`): authenticate, read the body, verify its signature, parse it
into alerts, hand them to :meth:`Intake.alerts`. The routes below are that pipeline's
documented door (OpenAPI); in a running API the fast path (:mod:`flows.api.fastpath`)
runs the same pipeline in front of FastAPI's routing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from flows.api import docs
from flows.api.auth import BEARER
from flows.api.errors import from_validation, parse_json
from flows.api.webhooks import Webhook
from flows.triggers import alertmanager, grafana
from flows.triggers.intake import Intake
from flows.triggers.model import Alert, Disposition, summary

router = APIRouter(prefix="/v1/alerts", tags=["triggers"])


def _alerts(parser: Callable[[Any], list[Alert]]) -> Callable[[bytes], list[Alert]]:
    """A body parser: JSON, then ``parser``; a pydantic error is a 422 naming the field."""

    def parse(raw: bytes) -> list[Alert]:
        try:
            return parser(parse_json(raw))
        except ValidationError as exc:
            raise from_validation(exc) from None

    return parse


def _answer(alerts: list[Alert], dispositions: list[Disposition]) -> dict[str, Any]:
    return {"alerts": len(alerts), **summary(dispositions)}


ALERTMANAGER = Webhook(f"{router.prefix}/alertmanager", "alertmanager", _alerts(alertmanager.parse), Intake.alerts,
                       _answer)
GRAFANA = Webhook(f"{router.prefix}/grafana", "grafana", _alerts(grafana.parse), Intake.alerts, _answer)


@router.post(
    "/alertmanager",
    openapi_extra=docs.body(alertmanager.AlertmanagerPayload, ALERTMANAGER.roles),
    dependencies=[BEARER],
)
async def alertmanager_webhook(request: Request) -> dict[str, Any]:
    """Alertmanager's webhook (``webhook_configs``): firing alerts start or attach runs, resolved ones are recorded.

    Roles: monitor, its ``sources`` naming alertmanager (or none). Point a receiver here with
    ``http_config.authorization.credentials`` set to the token.
    """
    return await request.app.state.webhooks.answer(ALERTMANAGER, request)


@router.post("/grafana", openapi_extra=docs.body(grafana.GrafanaPayload, GRAFANA.roles), dependencies=[BEARER])
async def grafana_webhook(request: Request) -> dict[str, Any]:
    """Grafana alerting's webhook contact point (legacy dashboard alerts are taken too). Roles: monitor, its
    ``sources`` naming grafana (or none); signed when the token has ``hmac``."""
    return await request.app.state.webhooks.answer(GRAFANA, request)
