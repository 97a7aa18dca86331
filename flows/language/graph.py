"""An SOP's step DAG as a Mermaid flowchart: what `sop graph` prints and the library page draws."""

from __future__ import annotations

from flows.language.durations import format_duration
from flows.language.spec import Sop


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
