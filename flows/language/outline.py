"""How an SOP reads to people: its step DAG as Mermaid, its triggers in words, its steps with their ladders.

What `sop graph`, `sop list` and `sop show` print and the library page shows (one source for both).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flows.language.calendar import calendar_name
from flows.language.durations import format_duration
from flows.language.ladder import LadderEntry, levels
from flows.language.spec import Sop
from flows.language.steps import KINDS
from flows.language.steps.human import HumanStep, hold_reasons, max_hold


def mermaid(sop: Sop) -> str:
    """A Mermaid ``flowchart TD`` of the step DAG (conditions and branches on the edges)."""
    lines = ["flowchart TD"]
    for step in sop.steps:
        label = step.name.replace('"', "'")
        suffix = f"<br/>due {format_duration(step.due)}" if step.due else ""
        shape = ('{{"%s"}}' if step.branches() else '["%s"]') % f"{label}{suffix}"  # a branching step: a decision
        lines.append(f"    {step.id.replace('-', '_')}{shape}")
    for step in sop.steps:
        for dep in sop.dependencies(step):
            edge = "-->"
            parent = next((s for s in sop.steps if s.id == dep), None)
            branch = next((b for b in parent.branches() if step.id in b.steps), None) if parent else None
            if branch is not None:
                edge = f"-->|{branch.label}|"
            elif step.when:
                edge = "-.->|when|"
            lines.append(f"    {dep.replace('-', '_')} {edge} {step.id.replace('-', '_')}")
    return "\n".join(lines)


def trigger_text(trigger: Any) -> str:
    """A trigger in words: ``metric negative_mentions > 100 per day``, ``alert alertname=X``."""
    kind = trigger._kind
    if kind == "metric":
        cond = (f"> {trigger.above:g}" if trigger.above is not None else
                f"< {trigger.below:g}" if trigger.below is not None else f"change {trigger.change}")
        per = f" per {trigger.period}" if trigger.period else ""
        times = f" for {trigger.for_} periods" if trigger.for_ > 1 else ""
        return f"metric {trigger.metric} {cond}{per}{times}"
    if kind == "alert":
        return "alert " + ",".join(f"{k}={v}" for k, v in trigger.alert.items())
    if kind == "event":
        return f"event {trigger.event}"
    return f"schedule {trigger.schedule} ({trigger.timezone})"


def ladder_outline(ladder: list[LadderEntry], due: timedelta | None, repeats: int = 6, cut_to: int = 2) -> list[dict[str, Any]]:
    """A step's ladder levels at offsets from ready, as ``sop show`` and the library page list them.

    An ``every`` rung of at most ``repeats`` repeats has each listed; a longer or endless one its
    first ``cut_to``, the last of which says how many follow (``more``: None when they go on
    until the step is done) and how often (``every``).
    """
    out: list[dict[str, Any]] = []
    listed: dict[int, int] = {}
    needed = sum(1 if entry.every is None else entry.max or cut_to for entry in ladder)  # an endless one: cut_to
    for level in levels(ladder, due, limit=needed):
        rung = int(level.key.split(".")[0]) - 1
        entry = ladder[rung]
        if level.is_repeat:
            listed[rung] = listed.get(rung, 0) + 1
            cut = entry.max is None or entry.max > repeats
            if cut and listed[rung] > cut_to:
                continue
        out.append({"level": level.key, "after_ready": format_duration(level.offset),
                    "notify": list(level.notify), "message": level.message})
        if level.is_repeat and cut and listed[rung] == cut_to:
            out[-1] |= {"more": None if entry.max is None else entry.max - cut_to,
                        "every": format_duration(entry.every)}  # type: ignore[arg-type]
    return out


def more_text(rung: dict[str, Any]) -> str | None:
    """The line after a cut-short repeat (``… and 8 more, every 30m``), or None when nothing is left out."""
    if "more" not in rung:
        return None
    if rung["more"] is None:
        return f"… and more, every {rung['every']} until the step is done"
    return f"… and {rung['more']} more, every {rung['every']}"


def describe(sop: Sop, repeats: int = 6, cut_to: int = 2, site: Any = None) -> dict[str, Any]:
    """The SOP as the show command prints it: steps with their ladders at absolute offsets (see :func:`ladder_outline`),
    and the calendar each step's due and ladder count on (None: wall time; with ``site``, a class's counts too)."""
    steps = []
    for step in sop.steps:
        ladder = ladder_outline(sop.ladder_for(step), step.due, repeats, cut_to) if isinstance(step, HumanStep) else []
        reasons = hold_reasons(sop, step) if isinstance(step, HumanStep) else []
        steps.append({"id": step.id, "title": step.name, "kind": step.kind, "detail": KINDS[step.kind].summary(step),
                      "needs": sop.dependencies(step), "when": step.when,
                      "due": format_duration(step.due) if step.due else None,
                      "calendar": calendar_name(sop, step, site),
                      "on_timeout": step.on_timeout, "escalation": ladder,
                      # what `sop hold --for` takes here, and how long a hold lasts before it escalates
                      "holds": {"waiting_for": reasons, "max_hold": format_duration(max_hold(sop, step))}
                      if reasons else None,
                      "form": {k: v.model_dump(exclude_none=True) for k, v in getattr(step, "form", {}).items()}})
    return {"id": sop.id, "title": sop.title, "class": sop.class_, "priority": f"P{sop.priority}", "owner": sop.owner,
            "deadline": format_duration(sop.deadline) if sop.deadline else None,
            "calendar": calendar_name(sop, None, site), "version": sop.version,
            "inputs": {k: v.model_dump(exclude_none=True) for k, v in sop.inputs.items()},
            "triggers": [trigger_text(t) for t in sop.triggers], "dedup": sop.dedup, "steps": steps}
