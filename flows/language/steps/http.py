"""``kind: http`` — call an endpoint; retries and backoff come from the Prefect task."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from flows.language.expressions import render_url, render_value
from flows.language.fields import Duration, Strict
from flows.language.masking import mask_url, redact
from flows.language.steps.base import ONCE, StepBase, StepContext, StepFailed, StepKind, Template, ready

MAX_BODY = 20_000
#: how long a call may take when the step sets no ``timeout`` (SOP time, scaled on a compressed run)
DEFAULT_TIMEOUT = timedelta(seconds=30)


class HttpRequest(Strict):
    """An HTTP call; url, json and headers are templates."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    json_body: Any = Field(default=None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)
    expect: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("expect", mode="before")
    @classmethod
    def _expect_list(cls, value: object) -> object:
        return [value] if isinstance(value, int) else value

    @field_validator("expect")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        wrong = [code for code in value if not 100 <= code <= 599]
        if wrong:  # no server answers them: the step could never succeed
            raise ValueError(f"HTTP statuses are 100 to 599, got {wrong!r}")
        if not value:
            raise ValueError("expect at least one HTTP status (the step could never succeed)")
        return value


class HttpStep(StepBase):
    """Call an HTTP endpoint, with retries and backoff."""

    kind: Literal["http"] = "http"
    request: HttpRequest
    retry_delay: Duration = timedelta(seconds=2)
    drill: Literal["simulate", "live"] = Field(default="simulate", description="in a drill: simulate the call "
                                                                               "(default) or make it for real")
    drill_answer: dict[str, Any] | None = Field(default=None, description="a drill's simulated answer: status, json")
    once: bool = Field(default=False, description=ONCE)

    def outputs(self) -> set[str]:
        return super().outputs() | {"status", "json", "body"}


@functools.cache
def _tls() -> Any:
    """httpx's own certificate checks (its CA bundle, ``$SSL_CERT_FILE``), built once per process: a client made
    without one loads the CA bundle again, 15-20 ms of CPU on every step."""
    import httpx

    return httpx.create_ssl_context()


def execute(step: HttpStep, ctx: StepContext) -> dict[str, Any]:
    """Send the request; succeed when the status is one of ``expect``.

    Outputs: ``status``, ``json`` (when the body is JSON), ``body`` (text, truncated).
    """
    import httpx  # here, not at the top: validating an SOP never needs an HTTP client

    request = step.request
    url = render_url(request.url, ctx.variables)
    body = render_value(request.json_body, ctx.variables)
    headers = render_value(request.headers, ctx.variables)
    limit = step.timeout or DEFAULT_TIMEOUT
    shown = mask_url(url)  # failure texts reach the ledger, Prefect and pages: no credentials in them
    try:
        with httpx.Client(timeout=ctx.timeout(limit), verify=_tls()) as client:  # on the run's clock, like its other durations
            response = client.request(request.method, url, json=body, headers=headers)
    except httpx.TimeoutException:
        raise StepFailed(f"{request.method} {shown} timed out after {ctx.timeout_text(limit)}") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{request.method} {shown} failed: {redact(str(exc), url)}") from None
    text = response.text[:MAX_BODY]
    try:
        parsed = response.json()
    except (json.JSONDecodeError, ValueError):
        parsed = None
    outputs = {"status": response.status_code, "json": parsed, "body": text}
    if response.status_code not in request.expect:
        raise StepFailed(f"{request.method} {shown} answered HTTP {response.status_code} "
                         f"(expected {', '.join(map(str, request.expect))})", outputs)
    return outputs


def templates(step: HttpStep) -> Iterator[Template]:
    """The url, every value inside the json body, and each header."""
    yield Template(step.request.url, ("request", "url"))
    yield from _leaves(step.request.json_body, ("request", "json"))
    for key, value in step.request.headers.items():
        yield Template(value, ("request", "headers", key))


def _leaves(value: Any, path: tuple[str | int, ...]) -> Iterator[Template]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield Template(value, path)


def summary(step: HttpStep) -> str:
    """``http POST https://…``."""
    return f"http {step.request.method} {step.request.url}"


def simulate(step: HttpStep, ctx: StepContext) -> dict[str, Any]:
    """A drill's answer instead of the call: the request that would have been sent (URL masked), and
    ``drill_answer`` (default: the first expected status, no body)."""
    request = step.request
    answer = step.drill_answer or {}
    return {"simulated": True, "status": answer.get("status", request.expect[0]), "json": answer.get("json"),
            "body": answer.get("body", ""),
            "request": {"method": request.method, "url": mask_url(render_url(request.url, ctx.variables)),
                        "json": render_value(request.json_body, ctx.variables)}}


KIND = StepKind(model=HttpStep, activate=ready, summary=summary, templates=templates, execute=execute,
                simulate=simulate, fails="its call may fail")
