"""``kind: http`` — call an endpoint; retries and backoff come from the Prefect task."""

from __future__ import annotations

import json
from typing import Any

import httpx

from flows.language.expressions import render, render_value
from flows.language.spec import HttpStep
from flows.language.steps.base import StepContext, StepFailed

MAX_BODY = 20_000


def execute(step: HttpStep, ctx: StepContext) -> dict[str, Any]:
    """Send the request; succeed when the status is one of ``expect``.

    Outputs: ``status``, ``json`` (when the body is JSON), ``body`` (text, truncated).
    """
    request = step.request
    url = render(request.url, ctx.variables)
    body = render_value(request.json_body, ctx.variables)
    headers = render_value(request.headers, ctx.variables)
    timeout = step.timeout.total_seconds() if step.timeout else 30.0
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.request(request.method, url, json=body, headers=headers)
    except httpx.TimeoutException:
        raise StepFailed(f"{request.method} {url} timed out after {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{request.method} {url} failed: {exc}") from None
    text = response.text[:MAX_BODY]
    try:
        parsed = response.json()
    except (json.JSONDecodeError, ValueError):
        parsed = None
    outputs = {"status": response.status_code, "json": parsed, "body": text}
    if response.status_code not in request.expect:
        raise StepFailed(f"{request.method} {url} answered HTTP {response.status_code} "
                         f"(expected {', '.join(map(str, request.expect))})", outputs)
    return outputs
