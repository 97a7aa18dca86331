"""``kind: notify`` — send a message to people, roles or channels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import ConfigDict, Field

from flows.language.expressions import render_text
from flows.language.fields import MessageTitle, Strict
from flows.language.steps.base import StepBase, StepContext, StepKind, Template, ready

#: a notify step never fails for a message nobody got: these say what happened
#: (``delivered``: every recipient got it; ``reached``/``failed``: recipients that did / did not)
NOTIFY_OUTPUTS = ("delivered", "reached", "failed")


class NotifyMessage(Strict):
    """A free-form message of a notify step; both parts are templates."""

    # `Message` in the published schema (docs/sop.schema.json), as it always was
    model_config = ConfigDict(title="Message")

    title: MessageTitle
    body: str = ""


class NotifyStep(StepBase):
    """Send a message to people, roles or channels."""

    kind: Literal["notify"] = "notify"
    notify: list[str] = Field(min_length=1)
    message: NotifyMessage
    drill: Literal["simulate", "live"] = Field(default="simulate", description="in a drill: record the message and "
                                                                               "whom it would reach (default) or "
                                                                               "send it for real")

    def outputs(self) -> set[str]:
        return super().outputs() | set(NOTIFY_OUTPUTS)


def execute(step: NotifyStep, ctx: StepContext) -> dict[str, Any]:
    """Render the message and deliver it; never fails for a message nobody got (a ``timeout``, when it has one, is
    its Prefect task's limit, as any automated step's: a delivery that outlasts it fails the step once it returns).

    A failed notification must not block or fail the run: the step is done, its outputs say
    what happened (``delivered``: every recipient got it; ``reached`` and ``failed``: how many
    recipients did and did not, a person counting once however many contacts were tried),
    and the pager has recorded each destination for `sop status` and the audit.
    """
    title = render_text(step.message.title, ctx.variables)
    body = render_text(step.message.body, ctx.variables)
    lanes = ctx.pager.broadcast(ctx.run_id, step.id, step.notify, title, body,
                                  sop_class=ctx.variables["run"]["class"],
                                  drill_speed=ctx.variables["run"]["speed"] if ctx.variables["run"].get("drill") else None)
    reached = sum(lanes.values())
    return {"delivered": bool(lanes) and reached == len(lanes), "reached": reached, "failed": len(lanes) - reached}


def simulate(step: NotifyStep, ctx: StepContext) -> dict[str, Any]:
    """A drill's message is not sent (a drill must not text the customers or post in the company's channels): the
    message as it would have been, and whom it would have reached; every recipient counts as reached (and
    nobody reachable is not delivered, as in a real run)."""
    reach = ctx.pager.would_reach(step.notify)
    return {"simulated": True, "delivered": bool(reach), "reached": len(reach), "failed": 0,
            "message": {"to": reach, "title": render_text(step.message.title, ctx.variables),
                        "body": render_text(step.message.body, ctx.variables)}}


def templates(step: NotifyStep) -> Iterator[Template]:
    """The message's title and body."""
    yield Template(step.message.title, ("message", "title"))
    yield Template(step.message.body, ("message", "body"))


def targets(step: NotifyStep) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """Whom the message goes to: people, roles or channels of the config."""
    for j, target in enumerate(step.notify):
        yield target, ("notify", j)


def summary(step: NotifyStep) -> str:
    """``notify → sre-oncall, status-page``."""
    return "notify → " + ", ".join(step.notify)


KIND = StepKind(model=NotifyStep, activate=ready, summary=summary, templates=templates, targets=targets,
                execute=execute, simulate=simulate)
