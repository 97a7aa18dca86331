"""``kind: notify`` — send a message to people, roles or channels."""

from __future__ import annotations

from typing import Any

from flows.language.expressions import render
from flows.language.spec import NotifyStep
from flows.language.steps.base import StepContext


def execute(step: NotifyStep, ctx: StepContext) -> dict[str, Any]:
    """Render the message and deliver it; never fails for a message nobody got.

    A failed notification must not block or fail the run: the step is done, its outputs say
    what happened (``delivered``: every recipient got it; ``reached`` and ``failed``: how many
    recipients did and did not, a person counting once however many contacts were tried),
    and the pager has recorded each destination for `sop status` and the audit.
    """
    title = render(step.message.title, ctx.variables)
    body = render(step.message.body, ctx.variables)
    lanes = ctx.pager.broadcast(ctx.run_id, step.id, step.notify, title, body,
                                  sop_class=ctx.variables["run"]["class"])
    reached = sum(lanes.values())
    return {"delivered": bool(lanes) and reached == len(lanes), "reached": reached, "failed": len(lanes) - reached}
