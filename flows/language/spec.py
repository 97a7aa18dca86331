"""The SOP model: what an SOP file says, validated, and nothing about how it runs.

This module imports nothing from Prefect, FastAPI, Apprise or SQLAlchemy (tests/spec/test_imports.py):
the compiler and the engine take these objects, the loader (``flows.language.loader``) makes them
from YAML with file:line errors, and ``flows.language.crosscheck`` does the cross-checks.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from flows.language.durations import DURATION_PATTERN, format_duration, parse_duration

SLUG = r"^[a-z][a-z0-9-]*$"
SOP_CLASSES = ("complaint", "outage", "policy", "routine")
SopClass = Literal["complaint", "outage", "policy", "routine"]
PRIORITY: dict[str, int] = {name: rank for rank, name in enumerate(SOP_CLASSES, start=1)}
STEP_KINDS = ("human", "http", "command", "notify", "wait", "check")

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "15m", "2h", "1d", "PT2H"]}),
]
Slug = Annotated[str, Field(pattern=SLUG)]


class Strict(BaseModel):
    """Base of every SOP model: unknown keys are errors (a typo must never be ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def field_error(self, name: str, message: str) -> ValidationError:
        """An error of a model validator located at one field (a ValueError would point at the whole model)."""
        details = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(name,),
                                   input=getattr(self, name, None))
        return ValidationError.from_exception_data(type(self).__name__, [details])


# --- fields: typed inputs and form fields -------------------------------------------------

FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def value_fits(kind: str, value: object) -> bool:
    """True when ``value`` is a valid value of field type ``kind`` (bool is not an integer)."""
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, FIELD_TYPES[kind])


class FieldSpec(Strict):
    """A typed parameter of a run (``inputs``) or of a human report (``form``)."""

    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: str | None = None
    default: Any = None
    enum: list[Any] | None = None
    required: bool | None = None
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _values_fit_type(self) -> FieldSpec:
        if self.enum is not None:
            if not self.enum:
                raise self.field_error("enum", "enum must list at least one value")
            bad = [v for v in self.enum if not value_fits(self.type, v)]
            if bad:
                raise self.field_error("enum", f"enum values {bad!r} are not of type {self.type}")
        if self.default is not None:
            if not value_fits(self.type, self.default):
                raise self.field_error("default", f"default {self.default!r} is not of type {self.type}")
            if self.enum is not None and self.default not in self.enum:
                raise self.field_error("default", f"default {self.default!r} is not one of the enum {self.enum!r}")
        if self.minimum is not None and self.type not in ("integer", "number"):
            raise self.field_error("minimum", "minimum applies only to integer and number fields")
        return self

    @property
    def is_required(self) -> bool:
        """A field is required unless it says otherwise or has a default."""
        return self.required if self.required is not None else self.default is None

    def check_value(self, value: object) -> str | None:
        """Return what is wrong with ``value`` for this field, or None when it is fine."""
        if not value_fits(self.type, value):
            return f"expected {self.type}, got {value!r}"
        if self.enum is not None and value not in self.enum:
            return f"expected one of {self.enum!r}, got {value!r}"
        if self.minimum is not None and value < self.minimum:  # type: ignore[operator]
            return f"must be at least {self.minimum:g}, got {value!r}"
        if self.maximum is not None and value > self.maximum:  # type: ignore[operator]
            return f"must be at most {self.maximum:g}, got {value!r}"
        return None

    def coerce(self, text: str) -> object:
        """Turn a command-line string (``-p key=value``) into this field's type."""
        if self.type == "string":
            return text
        if self.type == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(f"expected boolean (true/false), got {text!r}")
        try:
            return int(text) if self.type == "integer" else float(text)
        except ValueError:
            raise ValueError(f"expected {self.type}, got {text!r}") from None


# --- escalation ladder --------------------------------------------------------------------

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class LadderEntry(Strict):
    """One rung: at a % of the step's due budget or a fixed offset from ready, or ``every``."""

    at: str | None = Field(default=None, description="50% of the step's due, or an offset such as 3h")
    every: Duration | None = None
    notify: list[str] = Field(min_length=1)
    max: int | None = Field(default=None, ge=1, description="cap on repeats of an `every` entry")
    message: Literal["reminder", "escalated", "overdue"] | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at_is_percent_or_duration(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError("write a percent such as 50% or a duration such as 3h")
        text = str(value)
        if _PERCENT.match(text):
            return text.strip()
        parse_duration(text)
        return text.strip()

    @model_validator(mode="after")
    def _one_of_at_every(self) -> LadderEntry:
        if (self.at is None) == (self.every is None):
            raise ValueError("a ladder entry needs exactly one of `at` or `every`")
        if self.max is not None and self.every is None:
            raise self.field_error("max", "`max` applies only to an `every` entry")
        return self

    @property
    def percent(self) -> float | None:
        """The entry's percent of the due budget, or None for an offset / `every` entry."""
        match = _PERCENT.match(self.at or "")
        return float(match.group(1)) if match else None

    @property
    def offset(self) -> timedelta | None:
        """The fixed offset from ready for an ``at: 3h`` entry, else None."""
        if self.at is None or self.percent is not None:
            return None
        return parse_duration(self.at)


# --- triggers -----------------------------------------------------------------------------


class MetricRule(Strict):
    """Start the SOP when a metric crosses a line (threshold, N periods, or % change)."""

    _kind: ClassVar[str] = "metric"

    metric: str
    period: str | None = Field(default=None, description="day | week | month | a duration such as 1h")
    aggregate: Literal["sum", "avg", "last", "max", "min"] = "last"
    above: float | None = None
    below: float | None = None
    change: str | None = Field(default=None, description="versus the previous period: -15% or +30%")
    for_: int = Field(default=1, alias="for", ge=1, description="consecutive periods")
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is None or value in ("minute", "hour", "day", "week", "month"):
            return value
        parse_duration(value)
        return value

    @field_validator("change", mode="before")
    @classmethod
    def _change(cls, value: object) -> object:
        if value is None:
            return None
        if not re.match(r"^[+-]\d+(\.\d+)?%$", str(value).strip()):
            raise ValueError(f"expected a signed percent such as -15% or +30%, got {value!r}")
        return str(value).strip()

    @model_validator(mode="after")
    def _one_condition(self) -> MetricRule:
        given = [n for n in ("above", "below", "change") if getattr(self, n) is not None]
        if not given:
            raise ValueError("a metric rule needs exactly one of above, below, change (got none)")
        if len(given) > 1:
            raise self.field_error(given[1], f"a metric rule needs exactly one of above, below, change (got {given})")
        if self.change is not None and self.period is None:
            raise self.field_error("change", "a `change` rule needs a `period` to compare against (day, week, month…)")
        return self

    @property
    def change_pct(self) -> float | None:
        """The signed percent of a change rule (``-15%`` → -15.0)."""
        return float(self.change.rstrip("%")) if self.change else None


class AlertTrigger(Strict):
    """Start the SOP when an alert (Alertmanager or Grafana) matches these labels."""

    _kind: ClassVar[str] = "alert"

    alert: dict[str, str] = Field(min_length=1, description='label matchers; a value starting with "~" is a regex')
    source: Literal["alertmanager", "grafana", "any"] = "any"
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alert")
    @classmethod
    def _regexes_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for label, matcher in value.items():
            if isinstance(matcher, str) and matcher.startswith("~"):
                try:
                    re.compile(matcher[1:])
                except re.error as exc:
                    raise ValueError(f"label {label!r}: bad regex {matcher[1:]!r}: {exc}") from None
        return value


class EventTrigger(Strict):
    """Start the SOP on a generic JSON event (``POST /v1/events``)."""

    _kind: ClassVar[str] = "event"

    event: str
    match: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)


class ScheduleTrigger(Strict):
    """Start the SOP on a cron schedule (becomes a Prefect deployment schedule)."""

    _kind: ClassVar[str] = "schedule"

    schedule: str = Field(description='cron, e.g. "0 9 * * MON"')
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5:
            raise ValueError(f"expected a 5-field cron expression such as '0 9 * * MON', got {value!r}")
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression "
                             "(minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, weekday 0-6 or MON-SUN)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)


def check_timezone(value: str) -> str:
    """Return ``value`` when it is an IANA time zone name; raise ValueError otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name such as Asia/Shanghai)") from None
    return value


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in ("metric", "alert", "event", "schedule"):
            if kind in value:
                return kind
        return None
    return getattr(value, "_kind", None)


Trigger = Annotated[
    Union[  # noqa: UP007 - a discriminated union pydantic reads with its tags
        Annotated[MetricRule, Tag("metric")],
        Annotated[AlertTrigger, Tag("alert")],
        Annotated[EventTrigger, Tag("event")],
        Annotated[ScheduleTrigger, Tag("schedule")],
    ],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="a trigger needs one of the keys metric, alert, event, schedule",
    ),
]


# --- steps --------------------------------------------------------------------------------

#: result attributes every step exposes to later templates (``steps.<id>.<attr>``)
COMMON_OUTPUTS = ("state", "outcome", "actor", "note", "finished_at")
#: a notify step never fails for a message nobody got: these say what happened
#: (``delivered``: every recipient got it; ``reached``/``failed``: recipients that did / did not)
NOTIFY_OUTPUTS = ("delivered", "reached", "failed")
_ON_TIMEOUT = re.compile(r"^(skip|fail|fallback:[a-z][a-z0-9-]*)$")


class StepBase(Strict):
    """What every step has: identity, place in the DAG, condition, deadline behaviour."""

    id: Slug
    title: str | None = None
    description: str | None = None
    needs: list[str] = Field(default_factory=list)
    when: str | None = None
    due: Duration | None = None
    on_timeout: str | None = Field(default=None, description="skip | fail | fallback:<step>")
    escalation: list[LadderEntry] | None = None
    retries: int = Field(default=0, ge=0, le=20)
    timeout: Duration | None = None

    @field_validator("needs", mode="before")
    @classmethod
    def _needs_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("on_timeout")
    @classmethod
    def _on_timeout(cls, value: str | None) -> str | None:
        if value is not None and not _ON_TIMEOUT.match(value):
            raise ValueError(f"expected skip, fail or fallback:<step-id>, got {value!r}")
        return value

    @property
    def name(self) -> str:
        """The step's human title, falling back to its id."""
        return self.title or self.id

    @property
    def fallback(self) -> str | None:
        """The step to run instead when this one times out (``on_timeout: fallback:x``)."""
        if self.on_timeout and self.on_timeout.startswith("fallback:"):
            return self.on_timeout.split(":", 1)[1]
        return None

    def outputs(self) -> set[str]:
        """Names this step makes available as ``steps.<id>.<name>``."""
        return set(COMMON_OUTPUTS)


class Approval(Strict):
    """Four-eyes: ``count`` distinct approvers from ``approvers`` roles, not the initiator."""

    approvers: list[str] = Field(min_length=1)
    count: int = Field(default=2, ge=1)
    distinct_from: Literal["initiator"] | None = "initiator"


class HumanStep(StepBase):
    """A person does it and reports through a form, by a due time."""

    kind: Literal["human"] = "human"
    assignee: str
    form: dict[str, FieldSpec] = Field(default_factory=dict)
    evidence: bool = False
    approval: Approval | None = None

    def outputs(self) -> set[str]:
        return super().outputs() | set(self.form) | {"evidence", "approvers"}


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


class HttpStep(StepBase):
    """Call an HTTP endpoint, with retries and backoff."""

    kind: Literal["http"] = "http"
    request: HttpRequest
    retry_delay: Duration = timedelta(seconds=2)

    def outputs(self) -> set[str]:
        return super().outputs() | {"status", "json", "body"}


class CommandStep(StepBase):
    """Run a program (argv, no shell unless you ask for one), capture its output."""

    kind: Literal["command"] = "command"
    command: list[str] = Field(min_length=1)
    expect_exit: int = 0
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    def outputs(self) -> set[str]:
        return super().outputs() | {"exit_code", "stdout", "stderr"}


class Message(Strict):
    """A free-form message of a notify step; both parts are templates."""

    title: str
    body: str = ""


class NotifyStep(StepBase):
    """Send a message to people, roles or channels."""

    kind: Literal["notify"] = "notify"
    notify: list[str] = Field(min_length=1)
    message: Message

    def outputs(self) -> set[str]:
        return super().outputs() | set(NOTIFY_OUTPUTS)


class WaitStep(StepBase):
    """Wait for a while (a durable timer, no process held)."""

    kind: Literal["wait"] = "wait"
    duration: Duration


class CheckStep(StepBase):
    """Evaluate an expression and choose a branch."""

    kind: Literal["check"] = "check"
    check: str
    then: list[str] = Field(default_factory=list)
    else_: list[str] = Field(default_factory=list, alias="else")

    def outputs(self) -> set[str]:
        return super().outputs() | {"result"}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind is None and "assignee" in value:
            return "human"
        return kind if kind in STEP_KINDS else None
    return getattr(value, "kind", None)


Step = Annotated[
    Union[  # noqa: UP007 - a discriminated union pydantic reads with its tags
        Annotated[HumanStep, Tag("human")],
        Annotated[HttpStep, Tag("http")],
        Annotated[CommandStep, Tag("command")],
        Annotated[NotifyStep, Tag("notify")],
        Annotated[WaitStep, Tag("wait")],
        Annotated[CheckStep, Tag("check")],
    ],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="expected `kind` to be one of human, http, command, notify, wait, check "
        "(it may be left out only when the step has an `assignee`)",
    ),
]


# --- the SOP ------------------------------------------------------------------------------


class Sop(Strict):
    """A standard operating procedure: who owns it, what starts it, its steps and deadlines."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"title": "SOP", "description": "A standard operating procedure (sops/<id>.yaml)"},
    )

    id: Slug
    title: str
    description: str | None = None
    version: Annotated[str, WithJsonSchema({"type": ["string", "integer"], "title": "Version"})] = "1"
    class_: SopClass = Field(alias="class")
    owner: str
    deadline: Duration | None = None
    inputs: dict[str, FieldSpec] = Field(default_factory=dict)
    dedup: str | None = None
    triggers: list[Trigger] = Field(default_factory=list)
    escalation: list[LadderEntry] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @property
    def priority(self) -> int:
        """1 (complaint) … 4 (routine)."""
        return PRIORITY[self.class_]

    def step(self, step_id: str) -> StepBase:
        """The step with this id; KeyError when there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def ladder_for(self, step: StepBase) -> list[LadderEntry]:
        """The escalation ladder that applies to a step (its own, else the SOP's default)."""
        return step.escalation if step.escalation is not None else self.escalation

    def dependencies(self, step: StepBase) -> list[str]:
        """A step's direct upstream steps: its ``needs`` plus a check step that branches to it."""
        deps = list(step.needs)
        for other in self.steps:
            if isinstance(other, CheckStep) and step.id in (*other.then, *other.else_) and other.id not in deps:
                deps.append(other.id)
        return deps

    def schedules(self) -> list[ScheduleTrigger]:
        """The SOP's cron triggers."""
        return [t for t in self.triggers if isinstance(t, ScheduleTrigger)]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an SOP file (``sop schema``), for editors and for tests."""
    schema = Sop.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://sops-as-code.dev/schema/sop.json"
    return schema
