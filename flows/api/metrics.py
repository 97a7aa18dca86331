"""Metric samples: stored, then every metric rule on the series they touch is judged."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from flows.api import docs
from flows.api.auth import Principal, raw_body, require
from flows.api.errors import parse_body
from flows.triggers import metrics
from flows.triggers.model import summary

router = APIRouter(prefix="/v1/metrics", tags=["triggers"])


@router.post("", openapi_extra=docs.body(metrics.MetricsPayload, ("monitor",)))
async def post_samples(
    request: Request, principal: Principal = require("monitor"), raw: bytes = Depends(raw_body)
) -> dict[str, Any]:
    """Samples with timestamps (all stored, or none); rules that fire start or attach runs. Roles: monitor."""
    samples = metrics.samples(parse_body(raw, metrics.MetricsPayload))
    outcomes = await request.app.state.intake_thread.run(request.app.state.intake.samples, samples, principal.actor)
    return {"samples": len(samples), **summary(outcomes)}
