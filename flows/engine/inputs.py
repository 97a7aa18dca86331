"""What the engine refuses before it changes anything: run inputs that do not fit, reports on steps
that wait for none; and the ids it gives new runs."""

from __future__ import annotations

import json
import secrets
from typing import Any

from flows.language.spec import Sop

#: the most a run's inputs may weigh as JSON: they are its flow run's parameters, and Prefect's server refuses
#: more (``server.api.max_parameter_size``, 524,288 bytes by default, measured as :func:`_too_large` does)
MAX_INPUTS_BYTES = 524_288


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


def check_inputs(sop: Sop, raw: dict[str, Any], *, rendered: bool = False) -> dict[str, Any]:
    """Inputs typed and complete (defaults filled); InputRefused names each bad field.

    A person's blank (empty or only spaces: ``-p brand=``, ``""`` in the API) is not a value: a required input
    given blank is refused, so no run starts about nothing, and so is one with a default (``-p brand=$BRAND`` with
    the variable unset must not quietly start the default brand's run: leave the input out for its default); an
    optional one without a default is none. (The web forms leave an empty optional field out before this.)
    ``rendered``: the inputs come from a signal's or a follow-up's templates, whose empty text is kept as their word
    (:func:`flows.triggers.intake.given`: an alert without a brand must not become the default brand's run, nor be
    refused)."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in raw:
        if name not in sop.inputs:
            problems.append(f"unknown input `{name}` (inputs of {sop.id}: {', '.join(sop.inputs) or 'none'})")
    for name, spec in sop.inputs.items():
        blank = not rendered and isinstance(raw.get(name), str) and not raw[name].strip()
        if blank and spec.default is not None:
            problems.append(f"input `{name}` was given empty ({raw[name]!r}): give a value, or leave it out for "
                            f"its default ({spec.default!r})")
            continue
        if name not in raw or raw[name] is None or blank:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.is_required:
                problems.append(f"input `{name}` is required ({spec.type}{', one of ' + spec.allowed if spec.enum else ''})"
                                + (f", got {raw[name]!r}: give a value" if blank else ""))
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
        problem = spec.check_value(value)
        if problem:
            problems.append(f"input `{name}`: {problem}")
        elif spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    if not problems:
        problems = _too_large(out)
    if problems:
        raise InputRefused(problems)
    return out


def _too_large(inputs: dict[str, Any]) -> list[str]:
    """The inputs must fit in a flow run's parameters (they are its parameters): one problem naming the
    largest input when they do not."""
    size = len(json.dumps(inputs, separators=(",", ":")))  # ASCII (escaped) JSON: bytes as Prefect counts them
    if size <= MAX_INPUTS_BYTES:
        return []
    largest = max(inputs, key=lambda name: len(json.dumps(inputs[name])))
    return [f"input `{largest}`: the inputs are {size:,} bytes as JSON, more than a run takes "
            f"({MAX_INPUTS_BYTES:,}: what Prefect keeps as a flow run's parameters); pass a link to the data instead"]


