"""What the engine refuses before it changes anything: run inputs that do not fit, reports on steps
that wait for none; and the ids it gives new runs."""

from __future__ import annotations

import secrets
from typing import Any

from flows.language.spec import Sop


class InputRefused(ValueError):
    """Run inputs that do not fit the SOP's declared inputs; one problem per field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class StepNotActive(ValueError):
    """A report for a step that is not waiting for one (unknown, finished, automated…)."""


def new_run_id() -> str:
    """Short, unique, typeable run ids (``sop done 3f9a…`` accepts any unique prefix)."""
    return secrets.token_hex(5)


def check_inputs(sop: Sop, raw: dict[str, Any]) -> dict[str, Any]:
    """Inputs typed and complete (defaults filled); InputRefused names each bad field."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in raw:
        if name not in sop.inputs:
            problems.append(f"unknown input `{name}` (inputs of {sop.id}: {', '.join(sop.inputs) or 'none'})")
    for name, spec in sop.inputs.items():
        if name not in raw or raw[name] is None:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.is_required:
                problems.append(f"input `{name}` is required ({spec.type}{', one of ' + str(spec.enum) if spec.enum else ''})")
            else:
                out[name] = None  # declared but not given: templates see none, not an unknown variable
            continue
        value = raw[name]
        if isinstance(value, str) and spec.type != "string":
            try:
                value = spec.coerce(value)
            except ValueError as exc:
                problems.append(f"input `{name}`: {exc}")
                continue
        if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = spec.check_value(value)
        if problem:
            problems.append(f"input `{name}`: {problem}")
        out[name] = value
    if problems:
        raise InputRefused(problems)
    return out


