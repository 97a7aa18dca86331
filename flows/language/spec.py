"""The SOP model: what an SOP file says, validated, and nothing about how it runs.

This module imports nothing from Prefect, FastAPI, Apprise or SQLAlchemy (tests/language/test_imports.py):
the compiler and the engine take these objects, the loader (``flows.language.loader``) makes them
from YAML with file:line errors, and ``flows.language.crosscheck`` does the cross-checks. The SOP
and its triggers are here; its steps are the step kinds of ``flows.language.steps`` (one module
each, registered in ``KINDS``), its building blocks in ``flows.language.fields``.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import ConfigDict, Discriminator, Field, Tag, WithJsonSchema, field_validator, model_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from flows.language.cadence import Cadence
from flows.language.durations import parse_duration
from flows.language.expressions import TemplateProblem, analyse, variable_path
from flows.language.fields import (
    Duration,
    FieldSpec,
    OptionalDuration,
    Slug,
    Strict,
    Title,
    Word,
    check_timezone,
    written,
)
from flows.language.ladder import LadderEntry
from flows.language.presentation import run_subject
from flows.language.steps import KINDS
from flows.language.steps.base import StepBase

SOP_CLASSES = ("complaint", "outage", "policy", "routine")
SopClass = Literal["complaint", "outage", "policy", "routine"]
PRIORITY: dict[str, int] = {name: rank for rank, name in enumerate(SOP_CLASSES, start=1)}


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
        from croniter import CroniterBadDateError, croniter

        if len(value.split()) != 5:
            raise ValueError(f"expected a 5-field cron expression such as '0 9 * * MON', got {value!r}")
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression "
                             "(minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, weekday 0-6 or MON-SUN)")
        try:  # valid field by field, yet no date matches: 30 February, 31 April
            croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"{value!r} never fires: no date has that day in that month") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)


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


# --- steps: the step kinds' models, in one discriminated union read from the table ----------

#: (key, kind): a step without ``kind:`` is of this kind when it has this key (``assignee``: human)
_IMPLIED = [(kind.implied_by, name) for name, kind in KINDS.items() if kind.implied_by]


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind is None:
            return next((name for key, name in _IMPLIED if key in value), None)
        return kind if isinstance(kind, str) and kind in KINDS else None  # `kind: [a]` is no kind
    return getattr(value, "kind", None)


Step = Annotated[
    Union[tuple(Annotated[kind.model, Tag(name)] for name, kind in KINDS.items())],  # type: ignore[valid-type]  # noqa: UP007
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=f"expected `kind` to be one of {', '.join(KINDS)} "
        f"(it may be left out only when the step has {' or '.join(f'an `{key}`' for key, _ in _IMPLIED)})",
    ),
]


# --- follow-ups (their checks over the library: flows.language.followups) -----------------


class FollowUp(Strict):
    """Start another SOP's run when a run of this SOP ends (the key is ``follow_ups``, not ``then``: a check
    step's ``then`` lists the steps of a branch, and one word must not mean two things in one file)."""

    start: Slug = Field(description="the id of the SOP to start")
    when: Annotated[str | None, written("an expression over the ended run", " (it then starts on every end but a "
                                                                            "cancel)")] = Field(
        default=None, description="expression over the ended run (run.outcome: done | rejected | failed | "
                                  "cancelled); default: every end but a cancel")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the follow-up's inputs: templates over the "
                                                                     "ended run's inputs, steps, trigger and run")
    within: Duration = Field(description="the window it must be done in, from the run's end; its run's deadline "
                                         "(or its SOP's own, when shorter)")


# --- the SOP ------------------------------------------------------------------------------


class Sop(Strict):
    """A standard operating procedure: who owns it, what starts it, its steps and deadlines."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={"title": "SOP", "description": "A standard operating procedure (sops/<id>.yaml)"},
    )

    id: Slug
    title: Title
    description: str | None = None
    version: Annotated[str, WithJsonSchema({"type": ["string", "integer"], "title": "Version"})] = "1"
    class_: SopClass = Field(alias="class")
    owner: str
    deadline: OptionalDuration = None
    inputs: dict[str, FieldSpec] = Field(default_factory=dict)
    dedup: Annotated[str | None, written('a template such as "{{ inputs.customer }}"', " (then every start is a run "
                                                                                        "of its own)")] = None
    triggers: list[Trigger] = Field(default_factory=list)
    escalation: list[LadderEntry] = Field(default_factory=list)
    cadence: Cadence | None = Field(default=None, description="status updates while the run is open")
    calendar: Annotated[str | None, written("a calendar of config/calendars.yaml (or wall)", " (then wall time)")] = Field(
        default=None, description="a calendar of config/calendars.yaml: due, deadline and ladder offsets count "
                                  "business time")
    waiting_for: list[Word] = Field(default_factory=list, description="reasons a step may be put on hold for "
                                                                      "(its clock stops): platform_reply, customer…")
    max_hold: OptionalDuration = Field(default=None, description="the longest a hold may last before it escalates "
                                                                "(default 1d)")
    steps: list[Step] = Field(min_length=1)
    follow_ups: list[FollowUp] = Field(default_factory=list,
                                       description="runs of other SOPs started when a run of this one ends")
    tags: list[str] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        if isinstance(value, float):  # `version: 1.10` is the number 1.1: what was written is lost
            raise ValueError(f"`version` {value!r} is read as a number (YAML reads 1.10 as 1.1): quote it to keep it "
                             'as written (version: "1.10")')
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def priority(self) -> int:
        """1 (complaint) … 4 (routine)."""
        return PRIORITY[self.class_]

    @property
    def dedup_tells_runs_apart(self) -> bool:
        """Whether this SOP's dedup key differs from run to run: rendered from the run's inputs or its trigger (an
        alert's labels). A constant (``dedup: complaint-rate``, or a key from config only) is the same for every run:
        it keeps one run open at a time, and says nothing about what a run is about."""
        if not self.dedup:
            return False
        try:
            return any(ref[0] in ("inputs", "trigger") for ref in analyse(self.dedup))
        except TemplateProblem:  # `sop validate` says what is wrong with it; shown as keyed meanwhile
            return True

    def subject(self, dedup_key: str | None) -> str | None:
        """What a run of this SOP is about as people read it (:func:`~flows.language.presentation.run_subject` of
        its dedup key); where ``dedup`` is one choice input and nothing else (``"{{ inputs.area }}"``), that choice's
        label ("SRE"). None where the key is a constant (:attr:`dedup_tells_runs_apart`): after the SOP's title on a
        board card or a message it read as noise. The key itself stays the id: what dedups
        (:mod:`flows.engine.dedup`), JSON, the audit and commands read."""
        if not self.dedup_tells_runs_apart:
            return None
        path = variable_path(self.dedup or "")
        field = self.inputs.get(path[1]) if path and len(path) == 2 and path[0] == "inputs" else None
        choice = field.choice_named(dedup_key) if field is not None and field.enum and dedup_key else None
        return run_subject(field.choice_label(choice) if field is not None and choice is not None else dedup_key)

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
        """A step's direct upstream steps: its ``needs`` plus a step that branches to it (a check)."""
        deps = list(step.needs)
        for other in self._branched_from.get(step.id, ()):
            if other not in deps:
                deps.append(other)
        return deps

    @cached_property
    def _branched_from(self) -> dict[str, list[str]]:
        """Step id → the steps that branch to it, built once (asking every step each time is quadratic)."""
        index: dict[str, list[str]] = {}
        for other in self.steps:
            for branch in other.branches():
                for target in branch.steps:
                    sources = index.setdefault(target, [])
                    if other.id not in sources:
                        sources.append(other.id)
        return index

    def schedules(self) -> list[ScheduleTrigger]:
        """The SOP's cron triggers."""
        return [t for t in self.triggers if isinstance(t, ScheduleTrigger)]


class _PublishedNames(GenerateJsonSchema):
    """Definitions keep the names the published schema has always given them, whatever the class is called now."""

    #: class name → name in docs/sop.schema.json
    RENAMED: ClassVar[dict[str, str]] = {"NotifyMessage": "Message"}

    def normalize_name(self, name: str) -> str:
        return super().normalize_name(self.RENAMED.get(name, name))

    def default_schema(self, schema: Any) -> JsonSchemaValue:
        """A key whose schema refuses null (``due``: written empty it is an error) has no ``default: null`` for an
        editor to fill in: leaving the key out is its default."""
        json_schema = super().default_schema(schema)
        if "default" in json_schema and json_schema["default"] is None and not _takes_null(json_schema):
            del json_schema["default"]
        return json_schema


def _takes_null(schema: JsonSchemaValue) -> bool:
    """Whether a property's schema accepts null: its type, or one of its ``anyOf`` (no type: any value, and a
    ``$ref`` is not followed)."""
    if "anyOf" in schema:
        return any(_takes_null(option) for option in schema["anyOf"])
    kinds = schema.get("type")
    return kinds is None or kinds == "null" or (isinstance(kinds, list) and "null" in kinds)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an SOP file (``sop schema``), for editors and for tests."""
    schema = Sop.model_json_schema(by_alias=True, mode="validation", schema_generator=_PublishedNames)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://sops-as-code.dev/schema/sop.json"
    return schema
