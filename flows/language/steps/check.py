"""``kind: check`` — evaluate an expression and choose a branch; the engine skips the branch not taken."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field

from flows.language.expressions import evaluate
from flows.language.steps.base import Activation, Branch, StepBase, StepKind, Template


class CheckStep(StepBase):
    """Evaluate an expression and choose a branch."""

    kind: Literal["check"] = "check"
    check: str
    then: list[str] = Field(default_factory=list)
    else_: list[str] = Field(default_factory=list, alias="else")

    def outputs(self) -> set[str]:
        return super().outputs() | {"result"}

    def branches(self) -> tuple[Branch, ...]:
        """``then`` (drawn as yes) runs when the check is true, ``else`` (no) when it is false."""
        return (Branch("then", "yes", self.then), Branch("else", "no", self.else_))

    def skips(self, step_id: str, outputs: Mapping[str, Any]) -> bool:
        """True when ``step_id`` is on the branch the check did not take."""
        result = bool(outputs.get("result"))
        return (step_id in self.then and not result) or (step_id in self.else_ and result)


def activate(step: CheckStep, act: Activation) -> None:
    """Evaluate the expression at once: done with ``result`` (a bool), or failed when it cannot be evaluated."""
    variables = act.variables()
    try:
        outputs = {"result": bool(evaluate(step.check, variables))}
    except Exception as exc:
        act.fail(f"check could not be evaluated: {exc}")
        return
    act.finish(outputs)


def templates(step: CheckStep) -> Iterator[Template]:
    """The check itself, an expression."""
    yield Template(step.check, ("check",), expression=True)


def summary(step: CheckStep) -> str:
    """``check inputs.severity == 'high'``."""
    return f"check {step.check}"


KIND = StepKind(model=CheckStep, activate=activate, summary=summary, templates=templates)
