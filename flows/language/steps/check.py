"""``kind: check`` — evaluate an expression; the engine skips the branch not taken."""

from __future__ import annotations

from typing import Any

from flows.language.expressions import evaluate
from flows.language.spec import CheckStep


def execute(step: CheckStep, variables: dict[str, Any]) -> dict[str, Any]:
    """Outputs ``result`` (a bool) — ``then`` steps run when true, ``else`` steps when false."""
    return {"result": bool(evaluate(step.check, variables))}


def branch_skipped(step_id: str, check: CheckStep, result: bool) -> bool:
    """True when ``step_id`` is on the branch ``check`` did not take."""
    return (step_id in check.then and not result) or (step_id in check.else_ and result)
