"""Errors users can act on: every refusal is a 4xx with ``{"error", "field", "problems"}`` and one log line.

``field`` names where the problem is, as a path: ``body.inputs.brand``, ``body.alerts.3.status``,
``path.run``, ``header.authorization``. Our exceptions (InputRefused, ReportRefused,
RunNotFound, StepNotActive) and pydantic's are mapped here, in one place.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flows.engine.transitions import InputRefused, StepNotActive
from flows.engine.view import RunNotFound
from flows.language.steps.human import ReportRefused

log = logging.getLogger("sop.api")
_NAMED = re.compile(r"(?:input|field) `([^`]+)`")
M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A refusal with its HTTP status, a message, the field it is about and any further problems."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        problems: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.problems = problems or ([{"field": field, "error": message}] if field else [])
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "problems": self.problems}


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    return ".".join([prefix, *(str(part) for part in loc)]) if loc else prefix


def _message(error: dict[str, Any]) -> str:
    msg = error["msg"]
    text = msg[0].lower() + msg[1:] if msg else "invalid"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    value = error.get("input")
    if error["type"] != "missing" and isinstance(value, (str, int, float, bool)) and len(repr(value)) < 80:
        text += f" (got {value!r})"
    return text


def from_validation(exc: ValidationError, prefix: str = "body") -> ApiError:
    """A pydantic error as a 422 naming every bad field."""
    problems = [{"field": _loc(prefix, tuple(e["loc"])), "error": _message(e)} for e in exc.errors(include_url=False)]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(422, f"{first['field']}: {first['error']}{more}", first["field"], problems)


def from_problems(
    status: int, problems: list[str], prefix: str, headline: str, elsewhere: dict[str, str] | None = None
) -> ApiError:
    """Our ``problems`` lists (``input `x`: …``) with each problem located at ``prefix.x``.

    ``elsewhere`` locates problems that name no field by a word they contain (``evidence`` →
    ``body.evidence``).
    """
    located = []
    for problem in problems:
        named = _NAMED.search(problem)
        field = (
            f"{prefix}.{named.group(1)}"
            if named
            else next((where for word, where in (elsewhere or {}).items() if word in problem), prefix)
        )
        located.append({"field": field, "error": problem})
    return ApiError(status, f"{headline}: {'; '.join(problems)}", located[0]["field"] if located else prefix, located)


def parse_json(raw: bytes) -> Any:
    """Decode a request body; a 400 naming the position when it is not JSON."""
    if not raw.strip():
        raise ApiError(400, "the request has no body; send a JSON object (Content-Type: application/json)", "body")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text; send a JSON object", "body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "body") from None


def parse_body(raw: bytes, model: type[M]) -> M:
    """Decode and validate a body against ``model``; 400 / 422 naming the field otherwise."""
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, f"body: expected a JSON object, got {type(data).__name__}", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def refused(request: Request, error: ApiError) -> JSONResponse:
    """The response of a refusal, and its log line."""
    principal = getattr(request.state, "principal", None)
    log.warning(
        'event=request_refused status=%d method=%s path=%s field=%s token=%s client=%s reason="%s"',
        error.status,
        request.method,
        request.url.path,
        error.field or "-",
        getattr(principal, "token", "-"),
        request.client.host if request.client else "-",
        error.message.replace('"', "'"),
    )
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn our exceptions into located 4xx answers."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return refused(request, exc)

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> JSONResponse:
        return refused(request, from_validation(exc))

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "error": _message(e)} for e in exc.errors()]
        first = problems[0]
        return refused(request, ApiError(422, f"{first['field']}: {first['error']}", first["field"], problems))

    @app.exception_handler(InputRefused)
    async def _inputs(request: Request, exc: InputRefused) -> JSONResponse:
        return refused(request, from_problems(422, exc.problems, "body.inputs", "the inputs do not fit the SOP"))

    @app.exception_handler(ReportRefused)
    async def _report(request: Request, exc: ReportRefused) -> JSONResponse:
        return refused(
            request,
            from_problems(
                422,
                exc.problems,
                "body.values",
                "report refused, nothing recorded",
                {"evidence": "body.evidence", "approv": "body.actor", "actor": "body.actor"},
            ),
        )

    @app.exception_handler(RunNotFound)
    async def _run(request: Request, exc: RunNotFound) -> JSONResponse:
        return refused(request, ApiError(404, str(exc), "path.run"))

    @app.exception_handler(StepNotActive)
    async def _step(request: Request, exc: StepNotActive) -> JSONResponse:
        return refused(request, ApiError(409, str(exc), "path.step"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = "path" if exc.status_code in (404, 405) else None
        message = {
            404: f"no endpoint {request.url.path} (see /docs)",
            405: f"{request.method} is not allowed on {request.url.path} (see /docs)",
        }.get(exc.status_code, str(exc.detail))
        return refused(request, ApiError(exc.status_code, message, field, headers=getattr(exc, "headers", None)))
