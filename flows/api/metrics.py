"""Metric samples (a :class:`~flows.api.webhooks.Webhook`): stored, then the rules on the series they touch judged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from flows.api import docs
from flows.api.auth import BEARER
from flows.api.errors import parse_body
from flows.api.webhooks import Webhook
from flows.triggers import metrics
from flows.triggers.intake import Intake
from flows.triggers.model import Disposition, Sample, summary

router = APIRouter(prefix="/v1/metrics", tags=["triggers"])


def _parse(raw: bytes) -> list[Sample]:
    return metrics.samples(parse_body(raw, metrics.MetricsPayload, keys_once=False))


def _answer(samples: list[Sample], dispositions: list[Disposition]) -> dict[str, Any]:
    return {"samples": len(samples), **summary(dispositions)}


SAMPLES = Webhook(router.prefix, "metrics", _parse, Intake.samples, _answer)


@router.post("", openapi_extra=docs.body(metrics.MetricsPayload, SAMPLES.roles), dependencies=[BEARER])
async def post_samples(request: Request) -> dict[str, Any]:
    """Samples with timestamps (all stored, or none); rules that fire start or attach runs. Roles: monitor
    (its ``sources`` naming metrics, or none)."""
    return await request.app.state.webhooks.answer(SAMPLES, request)
