"""``kind: notify`` — send a message to people, roles or channels."""

from __future__ import annotations

from typing import Any

from flows.expressions import render
from flows.spec import NotifyStep
from flows.steps.base import StepContext, StepFailed


def execute(step: NotifyStep, ctx: StepContext) -> dict[str, Any]:
    """Render the message and deliver it; fail only when no destination at all accepted it."""
    title = render(step.message.title, ctx.variables)
    body = render(step.message.body, ctx.variables)
    results = ctx.pager.broadcast(ctx.run_id, step.id, step.notify, title, body,
                                  sop_class=ctx.variables["run"]["class"])
    delivered = sum(1 for r in results if r["ok"])
    outputs = {"delivered": delivered, "failed": len(results) - delivered}
    if results and not delivered:
        raise StepFailed(f"no destination accepted the message ({len(results)} tried)", outputs)
    return outputs
