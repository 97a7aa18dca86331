"""The building blocks of every SOP model: the strict base, names, durations, typed fields.

The SOP (``spec``), its step kinds (``steps``) and the site (``config``) are built from
these; this module imports none of them.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError

from flows.language.durations import DURATION_PATTERN, format_duration, parse_duration
from flows.language.presentation import labelled, shown

SLUG = r"^[a-z][a-z0-9-]*$"

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "15m", "2h", "1d", "PT2H"]}),
]
Slug = Annotated[str, Field(pattern=SLUG)]


#: the validation context of a run's pinned text (``Sop.model_validate(data, context=PINNED)``): it was valid when
#: its run started, and a rule added since (a key written empty, a bound) must not stop that run
PINNED = {"pinned": True}


def authored(info: ValidationInfo) -> bool:
    """Whether a model is being validated as its author wrote it (not a run's pinned text): rules added since a
    run started apply only then."""
    return not (info.context or {}).get("pinned")


class _Written(BeforeValidator):
    """:func:`written`'s validator; in the JSON Schema the key takes no null either, so an editor says what
    ``sop validate`` says."""

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return _without_null(handler(schema))


def _without_null(schema: JsonSchemaValue) -> JsonSchemaValue:
    """``schema`` less its ``null`` option (``X | None`` is ``anyOf: [X, null]``)."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def written(what: str, removed: str = "") -> BeforeValidator:
    """For a key that may be left out: written with no value (``due:``, which YAML reads as null) it is refused,
    not taken as left out (by the JSON Schema too). ``what``: what to write; ``removed``: what leaving it out
    means."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None and authored(info):
            raise ValueError(f"`{info.field_name}` is empty: write {what}, or remove the key{removed}")
        return value

    return _Written(check)


#: a duration that may be left out (``due``, ``deadline``…), but not written empty
OptionalDuration = Annotated[Duration | None, written("a duration like 2h")]
#: the longest title (an SOP's, a step's): one line a responder reads in a page; pages cut at 200
TITLE_MAX = 120
#: the longest title a message keeps (``notifications.message`` cuts longer ones when it sends them)
MESSAGE_TITLE_MAX = 200


def _one_line_title(value: str, limit: int = TITLE_MAX, rest: str = "description") -> str:
    """``value`` when it is a title: not blank, one line, at most ``limit`` characters; else ValueError saying to
    put the rest in the field ``rest``."""
    if not value.strip():
        raise ValueError("the title is empty (expected one line a responder reads in a page)")
    lines = value.splitlines()
    if lines != [value]:
        count = len([line for line in lines if line.strip()])
        has = f"this one has {count} lines" if count > 1 else "this one ends in a line break"
        raise ValueError(f"a title is one line (a responder reads it in a page), {has}: write it on one line "
                         f"and put the rest in `{rest}`")
    if len(value) > limit:
        raise ValueError(f"a title is at most {limit} characters (a responder reads it in a page), this one "
                         f"has {len(value):,}: shorten it and put the rest in `{rest}`")
    return value


def _message_title(value: str, info: ValidationInfo) -> str:
    """A message's title written as plain text (no template) is checked as a title of MESSAGE_TITLE_MAX; one with a
    template is known only when it is rendered (and made one line and cut then)."""
    if "{{" in value or "{%" in value or not authored(info):
        return value
    return _one_line_title(value, MESSAGE_TITLE_MAX, "body")


def _one_line(limit: int) -> dict[str, Any]:
    """:func:`_one_line_title` as JSON Schema: a character that is not a space, none of the characters Python
    ends a line at (``str.splitlines``), at most ``limit`` characters. (No ``^…$`` pattern: Python's ``$`` also
    matches before a final line break, which editors' regular expressions do not.)"""
    return {"maxLength": limit, "pattern": r"\S", "not": {"pattern": r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]"}}


MessageTitle = Annotated[
    str,
    AfterValidator(_message_title),
    WithJsonSchema({"type": "string", "anyOf": [{"pattern": r"\{\{|\{%"}, _one_line(MESSAGE_TITLE_MAX)],
                    "description": f"a template, or one line of at most {MESSAGE_TITLE_MAX} characters"}),
]


def _plain_title(value: str, info: ValidationInfo) -> str:
    """A title (an SOP's, a step's, a field's label) is shown as written on the board, in pages and in the audit: a
    template in it would show as ``{{ … }}``, so an author's is refused (a pinned text keeps what it had)."""
    if authored(info) and ("{{" in value or "{%" in value):
        raise ValueError("a title is shown as written (on the board, in pages and in the audit), never rendered: "
                         "write it without `{{ … }}` and put the run's values in `description`")
    return _one_line_title(value)


Title = Annotated[
    str,
    AfterValidator(_plain_title),
    WithJsonSchema({"type": "string", **_one_line(TITLE_MAX), "allOf": [{"not": {"pattern": r"\{\{|\{%"}}],
                    "description": f"one line a responder reads in a page (at most {TITLE_MAX} characters), shown "
                                   "as written (no template)"}),
]
#: a word of a declared list (a hold's reason: ``platform_reply``): lower case, digits, ``_`` and ``-``
Word = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]


class Strict(BaseModel):
    """Base of every SOP model: unknown keys are errors (a typo must never be ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def field_error(self, name: str, message: str) -> ValidationError:
        """An error of a model validator located at one field (a ValueError would point at the whole model)."""
        details = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(name,),
                                   input=getattr(self, name, None))
        return ValidationError.from_exception_data(type(self).__name__, [details])


def check_timezone(value: str) -> str:
    """Return ``value`` when it is an IANA time zone name; raise ValueError otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name such as Asia/Shanghai)") from None
    return value


# --- fields: typed inputs and form fields -------------------------------------------------

FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "date": (str,),  # a day of the calendar, written YYYY-MM-DD: kept as that text, which sorts as the days do
}
#: what a ``date`` field's value looks like (a browser's date input posts it so)
DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
#: how a ``date`` field's problems say what is expected
DATE_EXPECTED = "a date written YYYY-MM-DD (2026-12-31)"


#: the integers a field takes: 64-bit, what a database column, JSON readers and Prefect all keep exactly
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: why a text holding NUL is refused: PostgreSQL cannot store it, so neither ledger takes it (same answer on both)
NUL_PROBLEM = "holds a NUL character (U+0000), which cannot be stored"


def nul_problem(text: object, what: str) -> str | None:
    """``"<what> holds a NUL character…"`` when ``text`` is a string holding U+0000, else None."""
    return f"{what} {NUL_PROBLEM}".lstrip() if isinstance(text, str) and "\x00" in text else None


#: the longest free text a person gives (a note, a reason, a status update): a page or a message still reads it
TEXT_MAX = 4_000


def length_problem(text: object, what: str) -> str | None:
    """``"<what> is at most 4,000 characters (5,000 given)"`` for a longer string, else None."""
    if isinstance(text, str) and len(text) > TEXT_MAX:
        return f"{what} is at most {TEXT_MAX:,} characters ({len(text):,} given)".lstrip()
    return None


def text_problem(text: object, what: str) -> str | None:
    """What keeps ``text`` from being stored as free text (a NUL, then its length: :func:`nul_problem`,
    :func:`length_problem`), or None."""
    return nul_problem(text, what) or length_problem(text, what)


def value_fits(kind: str, value: object) -> bool:
    """True when ``value`` is a valid value of field type ``kind`` (bool is not an integer)."""
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "date":
        return isinstance(value, str) and is_date(value)
    return isinstance(value, FIELD_TYPES[kind])


def is_date(text: str) -> bool:
    """``2026-12-31``: a real day of the calendar, written YYYY-MM-DD (not 2026-02-30, not 20261231)."""
    if not DATE_TEXT.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def in_words(name: str, *, capital: bool = True) -> str:
    """A name as words, each as written, the first letter capitalised (``capital``: it begins a label; not inside a
    sentence): ``kol_involved`` → "Kol involved", ``every-4-hours`` → "Every 4 hours" (or "every 4 hours"),
    ``max_CPU`` → "Max CPU" (a capital within it stays)."""
    words = name.replace("_", " ").replace("-", " ")
    return words[:1].upper() + words[1:] if capital else words


def field_label(name: str, spec: FieldSpec | None = None) -> str:
    """What a page calls a field: its ``label`` when the SOP gives one, else its name in words (``kol_involved`` →
    "Kol involved": an acronym needs a ``label``)."""
    if spec is not None and spec.label:
        return spec.label
    return in_words(name)


#: a choice written as an id (``product_quality``, ``every-4-hours``), which a person is shown in words; one written
#: otherwise (``Weibo``, ``A/B test``) is shown as written
_ID_LIKE = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")


def _same(a: object, b: object) -> bool:
    """Equal as a field's values (``True`` is not the choice ``1``)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


class FieldSpec(Strict):
    """A typed parameter of a run (``inputs``) or of a human report (``form``)."""

    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    #: what a page calls the field (``KOL involved``); without one, its name in words (:func:`field_label`)
    label: Title | None = None
    description: str | None = None
    default: Any = None
    enum: list[Any] | None = None
    #: what a page calls some of the ``enum``'s choices (``rumour_or_fake: Rumour or fake news``); the others are
    #: shown in words (:meth:`choice_label`)
    enum_labels: dict[Any, Title] | None = Field(
        default=None, description="what a page calls some of the enum's choices (choice: label); the others are "
                                  "shown in words (product_quality: Product quality)")
    required: bool | None = None
    minimum: float | None = None
    maximum: float | None = None
    multiline: bool = Field(default=False, description="a string field a person writes as several lines (a list of "
                                                       "gaps, notes): a text box of its own on the step page")

    @model_validator(mode="after")
    def _values_fit_type(self, info: ValidationInfo) -> FieldSpec:
        if self.enum is not None:
            if not self.enum:
                raise self.field_error("enum", "enum must list at least one value")
            bad = [v for v in self.enum if not value_fits(self.type, v)]
            if bad:
                raise self.field_error("enum", f"enum values {bad!r} are not {self._type_words}{self._as_text(bad)}")
        if self.default is not None:
            if not value_fits(self.type, self.default):
                raise self.field_error("default", f"default {self.default!r} is not {self._type_words}"
                                                  f"{self._as_text([self.default])}")
            if self.enum is not None and self.default not in self.enum:
                raise self.field_error("default", f"default {self.default!r} is not one of the enum {self.enum!r}")
        if self.multiline and (self.type != "string" or self.enum is not None):
            raise self.field_error("multiline", "multiline applies to a string field written freely (no `enum`)")
        for bound in ("minimum", "maximum"):
            if getattr(self, bound) is not None and self.type not in ("integer", "number"):
                raise self.field_error(bound, f"{bound} applies only to integer and number fields")
        self._check_finite()
        if self.minimum is not None and self.maximum is not None:
            if self.minimum > self.maximum:
                raise self.field_error("minimum", f"minimum {self.minimum:g} is greater than maximum {self.maximum:g}: "
                                                  "no value could be given")
            if self.type == "integer" and math.ceil(self.minimum) > math.floor(self.maximum):
                raise self.field_error("minimum", f"no integer lies between minimum {self.minimum:g} and "
                                                  f"maximum {self.maximum:g}")
        if self.default is not None and (problem := self._out_of_bounds(self.default)):
            raise self.field_error("default", f"default {self.default!r} {problem}")
        if self.enum is not None:
            outside = [v for v in self.enum if self._out_of_bounds(v)]
            if outside:
                raise self.field_error("enum", f"enum values {outside!r} lie outside minimum/maximum and could never be given")
        self._check_enum_labels(authored(info))
        return self

    def _check_enum_labels(self, authored_now: bool) -> None:
        """``enum_labels`` names choices of the ``enum``; no two choices read the same (a person could not tell
        them apart, and ``sop done`` takes a label too). The latter is checked as the author writes the file."""
        if self.enum_labels is not None:
            if self.enum is None:
                raise self.field_error("enum_labels", "enum_labels names the choices of an `enum`: give the field an "
                                                      "`enum` too, or remove enum_labels")
            unknown = [key for key in self.enum_labels if not any(_same(key, v) for v in self.enum)]
            if unknown:
                raise self.field_error("enum_labels", f"enum_labels names {', '.join(map(repr, unknown))}, not a "
                                                      f"choice of the enum ({', '.join(map(str, self.enum))})"
                                                      f"{self._as_text(unknown)}")
        if not authored_now or not self.enum:
            return
        read: dict[str, Any] = {}
        for value, label in self.choices:
            other = read.setdefault(label.casefold(), value)
            if not _same(other, value):
                raise self.field_error("enum_labels" if self.enum_labels else "enum",
                                       f"the choices {other!r} and {value!r} would both read {label!r}: give them "
                                       "labels apart in enum_labels")

    @property
    def _type_words(self) -> str:
        """``of type integer``; a date's says how it is written."""
        return DATE_EXPECTED if self.type == "date" else f"of type {self.type}"

    def _as_text(self, values: list[Any]) -> str:
        """For a string field given booleans (``enum: [yes, no]``): YAML read the words as booleans; say to quote them."""
        if self.type != "string" or not any(isinstance(v, bool) for v in values):
            return ""
        return ": YAML reads yes, no, on, off, true and false without quotes as booleans; quote them to keep them " \
               'as text ("yes", "no")'

    def _check_finite(self) -> None:
        # YAML reads .nan and .inf as numbers; JSON, the ledger and every comparison choke on them
        for name in ("minimum", "maximum", "default"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise self.field_error(name, f"{name} must be a finite number, got {value!r}")
        if self.enum is not None and any(isinstance(v, float) and not math.isfinite(v) for v in self.enum):
            raise self.field_error("enum", "enum values must be finite numbers (no .nan or .inf)")

    def _out_of_bounds(self, value: object) -> str | None:
        if self.type not in ("integer", "number") or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.minimum is not None and value < self.minimum:
            return f"is below the minimum {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"is above the maximum {self.maximum:g}"
        return None

    def choice_label(self, value: object) -> str | None:
        """What a person is shown for ``value``, one of the ``enum``: its ``enum_labels`` entry, else an id in words
        (``product_quality`` → "Product quality"), else the choice as written (``Weibo``, ``3``); None for a value
        that is not one of the choices."""
        if self.enum is None or not any(_same(value, choice) for choice in self.enum):
            return None
        for key, label in (self.enum_labels or {}).items():
            if _same(key, value):
                return label
        return in_words(value) if isinstance(value, str) and _ID_LIKE.fullmatch(value) else shown(value)

    @property
    def choices(self) -> list[tuple[Any, str]]:
        """Each choice of the ``enum`` with what a person is shown for it (empty without an enum)."""
        return [(choice, self.choice_label(choice) or shown(choice)) for choice in self.enum or ()]

    @property
    def allowed(self) -> str:
        """The choices as a person may type them, for an error: each id, with its label first where the label is
        more than the id in other letter case (``Product quality (product_quality), low, Weibo``): a person on a
        phone terminal sees what the page calls it and what to type (``sop done`` takes either)."""
        return ", ".join(f"{label} ({choice})" if label.casefold() != str(choice).casefold() else str(choice)
                         for choice, label in self.choices)

    def labelled(self, value: Any) -> Any:
        """``value`` as it travels to where people read it: one of the choices carries its label (it is still the
        choice to every program: :class:`flows.language.presentation.Labelled`), any other value is as it is."""
        label = self.choice_label(value)
        if label is None or label == shown(value):
            return value
        written = any(_same(key, value) for key in self.enum_labels or {})  # else in words: not capital mid-sentence
        return labelled(value, label, None if written else in_words(str(value), capital=False))

    def choice_named(self, text: str) -> Any:
        """The choice ``text`` names, as a person types it: the choice itself, else its label, in any case
        (``Product quality`` → ``product_quality``); None when it names none."""
        wanted = text.strip().casefold()
        for match in (lambda choice, _label: str(choice).casefold(), lambda _choice, label: label.casefold()):
            found = [choice for choice, label in self.choices if match(choice, label) == wanted]
            if found:
                return found[0]
        return None

    @property
    def is_required(self) -> bool:
        """A field is required unless it says otherwise or has a default."""
        return self.required if self.required is not None else self.default is None

    def check_value(self, value: object) -> str | None:
        """Return what is wrong with ``value`` for this field, or None when it is fine."""
        if not value_fits(self.type, value):
            return f"expected {DATE_EXPECTED if self.type == 'date' else self.type}, got {value!r}"
        if (problem := nul_problem(value, "")) is not None:
            return problem
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite {self.type}, got {value!r}"
        if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            return f"must fit in 64 bits ({INT_MIN} to {INT_MAX}), got an integer of {len(str(abs(value)))} digits"
        if self.enum is not None and value not in self.enum:
            return f"expected one of {self.allowed}, got {value!r}"
        if self.minimum is not None and value < self.minimum:  # type: ignore[operator]
            return f"must be at least {self.minimum:g}, got {value!r}"
        if self.maximum is not None and value > self.maximum:  # type: ignore[operator]
            return f"must be at most {self.maximum:g}, got {value!r}"
        return None

    def check_answer(self, value: object) -> str | None:
        """:meth:`check_value` for a value a person gives in a step's form: a string is also free text, bounded
        like a note (a run's inputs are not: an alert's text is never refused for its length)."""
        return self.check_value(value) or length_problem(value, "")

    def coerce(self, text: str) -> object:
        """Turn a command-line string (``-p key=value``) into this field's type."""
        if self.type == "string":
            return text
        if self.type == "date":
            if not is_date(text.strip()):
                raise ValueError(f"expected {DATE_EXPECTED}, got {text!r}")
            return text.strip()
        if self.type == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(f"expected boolean (true/false), got {text!r}")
        if not text.isascii():  # Python reads ٣ or ５ as 3 and 5: a number a person did not type in our digits
            raise ValueError(f"expected {self.type} in the digits 0-9, got {text!r}")
        try:
            return int(text) if self.type == "integer" else float(text)
        except ValueError:
            raise ValueError(f"expected {self.type}, got {text!r}") from None
