"""A step's form as the page shows it, and the posted form read back into typed values.

One source of truth: the SOP's ``FieldSpec`` (``flows.language.fields``) types the page's
inputs (enums as choices shown by their labels, booleans as switches, numbers with their bounds, required marked)
and checks what comes back, with the same ``coerce`` and ``check_value`` the CLI and the API
use. Each problem is kept beside its field, so the page shows it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.language.fields import FieldSpec, field_label


class Refused(Exception):
    """A post that changes nothing: problems by field, and general ones (``status``: the page's, 422 unless
    the person may not do it at all, 403)."""

    def __init__(self, errors: dict[str, str] | None = None, problems: list[str] | None = None, status: int = 422):
        super().__init__("; ".join([*(errors or {}).values(), *(problems or [])]))
        self.errors = errors or {}
        self.problems = problems or []
        self.status = status


@dataclass(frozen=True)
class FormField:
    """One input of the page: its name, how it is typed and bounded, its label and help; ``choices`` are (value,
    label) pairs: the page shows the label and posts the value."""

    name: str
    label: str
    type: str
    required: bool
    help: str | None
    choices: tuple[tuple[Any, str], ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    multiline: bool = False

    @property
    def widget(self) -> str:
        """``select``, ``switch``, ``number``, ``date``, ``textarea`` or ``text``."""
        if self.choices:
            return "select"
        if self.type == "boolean":
            return "switch"
        if self.type == "date":
            return "date"  # the phone's date picker: no dashes typed by hand
        if self.multiline:
            return "textarea"
        return "number" if self.type in ("integer", "number") else "text"

    @property
    def step(self) -> str:
        return "1" if self.type == "integer" else "any"


def form_fields(form: dict[str, FieldSpec]) -> list[FormField]:
    """The page's inputs for a step's form, in the SOP's order."""
    return [
        FormField(name=name, label=field_label(name, spec), type=spec.type,
                  required=spec.is_required and spec.type != "boolean", help=spec.description,
                  choices=tuple(spec.choices), minimum=spec.minimum, maximum=spec.maximum, default=spec.default,
                  multiline=spec.multiline)
        for name, spec in form.items()
    ]


def read_form(form: dict[str, FieldSpec], posted: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The typed values of a posted form, and the problems by field name (empty when all is well).

    A switch (boolean) is false when the browser sent nothing for it, as unchecked boxes do.
    An empty optional field is left out; an empty required one is a problem.
    """
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, spec in form.items():
        raw = posted.get(name)
        if spec.type == "boolean":
            values[name] = raw is not None and raw.strip().lower() in ("true", "on", "yes", "1")
            continue
        if raw is None or not raw.strip():
            if spec.is_required:
                problems[name] = "required" + (f": one of {', '.join(label for _, label in spec.choices)}"
                                               if spec.enum else "")
            continue
        if spec.multiline:  # a browser sends a text box's lines as CRLF: kept as the lines they are
            raw = raw.replace("\r\n", "\n").replace("\r", "\n")
        try:
            value = spec.coerce(raw.strip())
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        wrong = spec.check_answer(value)
        if wrong:
            problems[name] = wrong
        else:
            values[name] = value
    return values, problems
