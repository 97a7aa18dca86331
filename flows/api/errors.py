"""Errors users can act on: every refusal is a 4xx with ``{"error", "field", "problems"}`` and one log line.

``field`` names where the problem is, as a path: ``body.inputs.brand``, ``body.alerts.3.status``,
``path.run``, ``header.authorization``. Our exceptions (InputRefused, ReportRefused,
RunNotFound, StepNotActive, the holds' HoldReasonRefused and HoldNotAllowed) and pydantic's
are mapped here, in one place.

Every body is decoded here too (:func:`parse_json`, the one door for JSON): what no layer
below can take (non-finite numbers, integers past 64 bits, deep nesting, NUL) is refused,
located, before any model or the ledger sees it. What no handler expected is a 500 in the
same shape (:func:`failed`), logged with its traceback.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flows.engine.holds import HoldNotAllowed, HoldNoteRefused, HoldReasonRefused
from flows.engine.links import without_link_secrets
from flows.engine.people import UpdateRefused
from flows.engine.transitions import InputRefused, StepNotActive
from flows.engine.view import RunNotFound
from flows.language.steps.human import ReportRefused
from flows.ledger.outage import database_away, first_line
from flows.logfmt import kv

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
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):  # not our class names: JSON's words
        return f"expected a JSON object, got {_json_kind(error.get('input'))}"
    value = error.get("input")
    if error["type"] != "missing" and isinstance(value, (str, int, float, bool)) and len(repr(value)) < 80:
        text += f" (got {value!r})"
    return text


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    if isinstance(value, bool):
        return "true or false"
    return {list: "an array", str: "a string", int: "a number", float: "a number", type(None): "null"}.get(
        type(value), "something else")


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


#: how deep a body may nest objects and arrays (our payloads nest 4 deep; ~1,000 deep breaks the decoder)
MAX_DEPTH = 32
#: integers a body may carry: 64-bit signed (a longer one cannot be stored, typed or handed to Prefect)
MAX_INT = 2**63 - 1
_LONGEST_INT = len(str(MAX_INT)) + 1  # digits and a sign
#: bytes that can only be in a body whose strings need a closer look: NUL, and half a surrogate pair
_SUSPECT_STRING = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]")
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_BRACKETS_IN_STRINGS = re.compile(rb'"[^"]*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")


class _Refused:
    """A number the decoder met that a body may not carry (kept in place so that the walk can locate it)."""

    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str):
        self.text, self.why = text, why


class _Twice(dict):  # type: ignore[type-arg]
    """An object that gave ``key`` more than once (kept in place so that the walk can locate it)."""

    __slots__ = ("key",)


def parse_json(raw: bytes, *, keys_once: bool = False) -> Any:
    """Decode a request body; a 400 naming the position when it is not JSON, a 4xx naming the field when
    it holds what nothing downstream can take.

    Refused, located (``body.inputs.score``): ``NaN`` and ``Infinity`` (not JSON, RFC 8259) and numbers too
    large to be finite (``1e999``); integers beyond 64 bits; objects and arrays nested deeper than
    :data:`MAX_DEPTH`; strings (or keys) holding NUL (PostgreSQL cannot store it) or half a surrogate
    pair (not text). The checks cost a walk only when the bytes say one may be needed. ``keys_once``: a key
    given twice in one object is refused at its path too (``{"sop": "a", "sop": "b"}`` started ``b``: JSON
    readers keep either); a person's bodies ask for it, a monitor's webhooks (machine-written, the hot path) do not.
    """
    if not raw.strip():
        raise ApiError(400, "the request has no body; send a JSON object (Content-Type: application/json)", "body")
    refused: list[_Refused] = []

    def constant(text: str) -> _Refused:
        refused.append(_Refused(text, f"{text} is not JSON (RFC 8259); send a finite number or null"))
        return refused[-1]

    def number(text: str) -> float | _Refused:
        value = float(text)
        if math.isfinite(value):
            return value
        refused.append(_Refused(text, f"{text[:40]} is too large to be a finite number"))
        return refused[-1]

    def integer(text: str) -> int | _Refused:
        if len(text) <= _LONGEST_INT and -MAX_INT - 1 <= (value := int(text)) <= MAX_INT:
            return value
        refused.append(_Refused(text, f"an integer of {len(text.lstrip('-'))} digits is out of range (64-bit: at most {MAX_INT})"))
        return refused[-1]

    twice: list[_Twice] = []  # objects that gave a key twice: the walk locates the first

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) == len(items):
            return found
        seen: set[str] = set()
        twice.append(_Twice(found))
        twice[-1].key = next(key for key, _ in items if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        return twice[-1]

    try:
        data = json.loads(raw, parse_constant=constant, parse_float=number, parse_int=integer,
                          object_pairs_hook=pairs if keys_once else None)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text; send a JSON object", "body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}", "body") from None
    except RecursionError:
        raise ApiError(422, f"the body nests objects or arrays more than {MAX_DEPTH} deep", "body") from None
    if refused or twice or _SUSPECT_STRING.search(raw) or _nests_deeper(raw, MAX_DEPTH):
        _check_values(data)
    return data


def _nests_deeper(raw: bytes, limit: int) -> bool:
    """Whether a (well-formed) JSON text nests objects and arrays more than ``limit`` deep, at the speed of
    bytes: escapes dropped, only quotes and brackets kept, strings dropped, then each pass removes the
    innermost pairs (one level)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_A_BRACKET)
    brackets = _BRACKETS_IN_STRINGS.sub(b"", kept)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def _check_values(data: Any) -> None:
    """Walk a decoded body (without recursion) and refuse, at its path, the first value it may not hold."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(data, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        where = _loc("body", path)
        if isinstance(value, _Refused):
            raise _located(400 if value.text in ("NaN", "Infinity", "-Infinity") else 422, where, value.why)
        if isinstance(value, str):
            _check_text(value, where, "value")
        elif isinstance(value, (dict, list)):
            if isinstance(value, _Twice):
                raise _located(422, _loc("body", (*path, value.key)), f"`{value.key}` is given twice in one object: "
                                                                       "give it once")
            if depth >= MAX_DEPTH:
                raise _located(422, where, f"objects and arrays nest more than {MAX_DEPTH} deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, _loc("body", (*path, key)), "key")
                stack.append((item, (*path, key), depth + 1))


def _check_text(text: str, where: str, what: str) -> None:
    if "\x00" in text:
        raise _located(422, where, f"the {what} holds a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _located(422, where, f"the {what} holds half a surrogate pair (\\ud800-\\udfff alone): not text") from None


def _located(status: int, where: str, problem: str) -> ApiError:
    return ApiError(status, f"{where}: {problem}", where, [{"field": where, "error": problem}])


def parse_body(raw: bytes, model: type[M], *, keys_once: bool = True) -> M:
    """Decode and validate a body against ``model``; 400 / 422 naming the field otherwise. ``keys_once`` (a
    person's bodies): a key given twice in one object is refused (:func:`parse_json`)."""
    data = parse_json(raw, keys_once=keys_once)
    if not isinstance(data, dict):
        raise ApiError(422, f"body: expected a JSON object, got {type(data).__name__}", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def refused(request: Request, error: ApiError) -> JSONResponse:
    """The response of a refusal, and its log line (every value escaped: a newline in a path stays on the line)."""
    principal = getattr(request.state, "principal", None)
    log.warning(
        kv(
            "event=request_refused",
            status=error.status,
            method=request.method,
            path=request.url.path,
            field=error.field or "-",
            token=getattr(principal, "token", "-"),
            client=request.client.host if request.client else "-",
            reason=error.message[:500],
        )
    )
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


#: how long a client is asked to wait before it sends again when the database is away (seconds)
RETRY_AFTER_S = 5


def failed(request: Request, exc: Exception) -> JSONResponse:
    """A 500 in the same shape as a refusal, for what no handler expected (a bug of ours: logged with its traceback);
    a 503 with ``Retry-After`` when the ledger's database is away (logged in one line: a database down for a minute
    is not thousands of tracebacks). Alertmanager and Grafana send a 5xx again (a repeat attaches to its run)."""
    if database_away(exc):
        log.error(kv("event=request_failed", method=request.method, path=without_link_secrets(request.url.path),
                     error=type(exc).__name__,
                     cause="database unreachable", detail=first_line(exc)))
        body = {"error": "the service's database cannot be reached now; send this request again in a moment "
                         f"(retry after {RETRY_AFTER_S} s)", "field": None, "problems": []}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    log.error(kv("event=request_failed", method=request.method, path=without_link_secrets(request.url.path),
                 error=type(exc).__name__),
              exc_info=exc)
    body = {"error": f"internal error ({type(exc).__name__}): a fault of the service, not of the request; see the API log",
            "field": None, "problems": []}
    return JSONResponse(body, status_code=500)


def unexpected(request: Request, exc: Exception) -> Response:
    """The answer to what no handler expected (logged by :func:`failed`): a page saying so for a person's browser,
    the JSON 500 for the API's clients."""
    answer = failed(request, exc)
    if not wants_a_page(request, posted=True):
        return answer
    from flows.web.pages import notice

    try:
        return notice(request, FAULT_TITLE, FAULT_TEXT, answer.status_code, action=("/", "Go to your steps"))
    except Exception:  # noqa: BLE001 - the page itself failed (the database is away): a page that needs nothing
        log.exception("event=fault_page_failed path=%s", without_link_secrets(request.url.path))
        return HTMLResponse(FAULT_PAGE, status_code=answer.status_code, headers={"Cache-Control": "no-store"})


FAULT_TITLE = "Something went wrong on our side"
FAULT_TEXT = ("The page could not be shown because of a fault of the service, not of anything you did. Try again in "
              "a moment; if it happens again, tell the site's operators (the service's log says what failed).")
#: the fault page when even the site's own page cannot be drawn: no session, no template, no database
FAULT_PAGE = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
              f'content="width=device-width, initial-scale=1"><title>{FAULT_TITLE}</title></head><body>'
              f'<h1>{FAULT_TITLE}</h1><p>{FAULT_TEXT}</p><p><a href="/">Go to your steps</a></p></body></html>')


class Answering:
    """An outermost middleware that answers what escaped the app, when nothing was sent yet: :meth:`caught` gets the
    exception and whether the answer had started (then only the server can close the connection)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:  # noqa: BLE001 - caught() re-raises what it does not answer
            await self.caught(exc, started, scope, receive, send)

    async def caught(self, exc: BaseException, started: bool, scope: Any, receive: Any, send: Any) -> None:
        raise exc


class Faults(Answering):
    """Answers what no handler expected itself (:func:`unexpected`), inside the server's own last resort: an exception
    that reached the server made it log it again and drop the connection under the answer (a browser showed a reset
    connection, not the page). Outermost of the app's own middleware."""

    async def caught(self, exc: BaseException, started: bool, scope: Any, receive: Any, send: Any) -> None:
        if started or not isinstance(exc, Exception):  # too late for an answer of ours: the server closes it
            raise exc
        await unexpected(Request(scope, receive), exc)(scope, receive, send)


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
        return refused(
            request,
            from_problems(422, exc.problems, "body.inputs", "the inputs do not fit the SOP",
                          {"speed": "body.speed", "the reason": "body.reason"}),
        )

    @app.exception_handler(UpdateRefused)
    async def _update(request: Request, exc: UpdateRefused) -> JSONResponse:
        if exc.what == "actor":  # the token's person may not post on this run: a permission, not the body
            return refused(request, ApiError(403, "status update refused: " + "; ".join(exc.problems), None,
                                             [{"field": None, "error": p} for p in exc.problems]))
        return refused(request, from_problems(422, exc.problems, "body.text", "status update refused"))

    @app.exception_handler(HoldNoteRefused)
    async def _hold_note(request: Request, exc: HoldNoteRefused) -> JSONResponse:
        return refused(request, from_problems(422, exc.problems, "body.note", "refused, nothing recorded"))

    @app.exception_handler(HoldReasonRefused)
    async def _hold_reason(request: Request, exc: HoldReasonRefused) -> JSONResponse:
        return refused(request, from_problems(422, exc.problems, "body.reason", "not put on hold"))

    @app.exception_handler(HoldNotAllowed)
    async def _hold_person(request: Request, exc: HoldNotAllowed) -> JSONResponse:
        return refused(request, from_problems(403, exc.problems, "path.step", "refused, nothing recorded",
                                              {" on hold run ": "path.run", " release run ": "path.run"}))

    @app.exception_handler(ReportRefused)
    async def _report(request: Request, exc: ReportRefused) -> JSONResponse:
        return refused(
            request,
            from_problems(
                422,
                exc.problems,
                "body.values",
                "report refused, nothing recorded",
                {"evidence": "body.evidence", "approv": "body.actor", "actor": "body.actor", "the note": "body.note"},
            ),
        )

    @app.exception_handler(RunNotFound)
    async def _run(request: Request, exc: RunNotFound) -> JSONResponse:
        return refused(request, ApiError(404, str(exc), "path.run"))

    @app.exception_handler(StepNotActive)
    async def _step(request: Request, exc: StepNotActive) -> JSONResponse:
        return refused(request, ApiError(409, str(exc), "path.step"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return unexpected(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and wants_a_page(request):  # a person's browser: a page, not the API's JSON
            from flows.web.pages import notice

            return notice(request, "Page not found", f"There is no page {request.url.path}.", 404,
                          action=("/", "Go to your steps"))
        field = "path" if exc.status_code in (404, 405) else None
        message = {
            404: f"no endpoint {request.url.path} (see /docs)",
            405: f"{request.method} is not allowed on {request.url.path} (see /docs)",
        }.get(exc.status_code, str(exc.detail))
        return refused(request, ApiError(exc.status_code, message, field, headers=getattr(exc, "headers", None)))


def wants_a_page(request: Request, posted: bool = False) -> bool:
    """A browser asking for a page (not the API's clients, which get JSON): GET (or, ``posted``, a form's POST), HTML
    accepted, not under /v1."""
    return (request.method in (("GET", "POST") if posted else ("GET",)) and "text/html" in request.headers.get("accept", "")
            and not request.url.path.startswith("/v1/") and getattr(request.app.state, "web", None) is not None)
