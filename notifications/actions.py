"""What a message asks its reader to do: the ``sop done`` command and the same as an API call.

Derived from the context so that every kind that asks for work spells it the same way; the
engine may pass its own :class:`~notifications.message.Action` instead.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from notifications.message import ACTION_KINDS, Action, FormField

if TYPE_CHECKING:
    from notifications.message import Context

_EXAMPLE = {"integer": 0, "number": 0, "boolean": True, "date": "2026-12-31"}


def placeholder(field: FormField) -> str:
    """How a field's value is shown in the command: ``<low|medium|high>``, ``<integer>``, ``<text>``."""
    if field.enum:
        return "<" + "|".join(_text(v) for v in field.enum) + ">"
    if field.type == "boolean":
        return "<true|false>"
    return {"string": "<text>", "date": "<YYYY-MM-DD>"}.get(field.type, f"<{field.type}>")


def example(field: FormField) -> Any:
    """A valid example value for the API body (the first enum value, 0, true, or a placeholder)."""
    if field.enum:
        return field.enum[0]
    return _EXAMPLE.get(field.type, placeholder(field))


def action_for(ctx: Context) -> Action:
    """The ``sop done`` command and API call for the context's step, as its recipient would run them.

    Required form fields go into the command (``-f name=<...>``); optional ones only into the
    API example. Kinds that ask for no work (a step done, run-level news) get ``sop status <run>``.
    """
    base = ctx.api_base_url.rstrip("/")
    run_id = ctx.run.id
    if ctx.step is None or ctx.kind not in ACTION_KINDS:
        return Action(
            command=f"sop status {shlex.quote(run_id)}",
            api_method="GET",
            api_url=f"{base}/v1/runs/{quote(run_id, safe='')}",
            api_body={},
        )
    step = ctx.step
    parts = ["sop", "done", shlex.quote(run_id), shlex.quote(step.id), "--as", shlex.quote(ctx.recipient.id)]
    for f in step.form:
        if f.required:
            parts += ["-f", f"{f.name}={placeholder(f)}"]
    if step.evidence_required:
        parts += ["--evidence", "<link>"]
    body: dict[str, Any] = {}
    if step.form:
        body["values"] = {f.name: example(f) for f in step.form}
    if step.evidence_required:
        body["evidence"] = ["https://link-to-your-evidence"]
    link = ctx.step_link(ctx.recipient.id) if ctx.step_link is not None else None
    return Action(
        command=" ".join(parts),
        api_method="POST",
        api_url=f"{base}/v1/runs/{quote(run_id, safe='')}/steps/{quote(step.id, safe='')}",
        api_body=body,
        link=link,
    )


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
