"""The steps a run's end may leave unfinished, as a follow-up of that run reads them.

A follow-up is decided when its run ends (``flows.engine.followups``), and its ``when`` and inputs may read any
step of the run. A step that did not finish has only the common fields then (state, outcome, actor, note,
finished_at), as a skipped one has (``flows.language.skips``), and reading one of its own fails:

- **cancelled**: a person may cancel a run at any moment, so any step may be left ``cancelled``;
- **failed**: a step that fails by its own work (a call or a command: ``StepKind.fails``), by its deadline
  (``on_timeout: fail``) or by its time limit (an automated step's ``timeout``, a notify step's too) ends the run
  ``failed`` once the rest is done: it is left ``failed``, and every step that needs it (directly or through
  others) ``blocked``;
- **blocked** after a fallback: a step that times out hands what needs it to its fallback (``on_timeout:
  fallback:<step>``); when that one fails, they are left ``blocked`` and the run fails; when it ends without
  standing in (skipped by its own ``when`` or ``on_timeout: skip``, or already done standing in for another step),
  they are left ``blocked`` and the run ends ``done``;
- **rejected**: a person's step reported rejected (its rework loop spent, if it has one) ends the run
  ``rejected``: every step that needs it is left ``blocked`` (the rejected step has its form's fields, empty).

Whether a follow-up starts on such an end is its ``when``'s to say (without one: every end but a cancel); the
tries of :func:`flows.language.skips.skip_problems` set ``run.outcome`` to the end that leaves the step so. A
template that cannot be rendered fails a step too: that is what the rest of ``sop validate`` refuses, and it is
not counted here.
"""

from __future__ import annotations

from collections import Counter

from flows.language.durations import format_duration
from flows.language.graph import StepGraph
from flows.language.skips import Skippable
from flows.language.spec import Sop
from flows.language.steps import KINDS
from flows.language.steps.base import COMMON_OUTPUTS, StepBase
from flows.language.steps.human import HumanStep


def unfinished(sop: Sop) -> dict[str, tuple[Skippable, ...]]:
    """The ways each step may be left unfinished by its run's end, by each spelling of its id (only steps with
    fields of their own)."""
    graph = StepGraph(sop)
    order = graph.topological()
    failing = {step.id: why for step in sop.steps if (why := _fails(step)) is not None}
    # a step that times out hands what needs it to its fallback: when that one fails, they are left blocked
    fell_back = {step.id: step.fallback for step in sop.steps if step.fallback in failing}
    failed_before = _first_upstream(graph, order, {*failing, *fell_back})
    # … and when it ends without standing in, they are left blocked in a run that ends done
    stands_in = Counter(step.fallback for step in sop.steps if step.fallback)
    by_id = {step.id: step for step in sop.steps}
    fell_short = {step.id: step.fallback for step in sop.steps
                  if step.fallback and _may_not_stand_in(by_id.get(step.fallback), stands_in[step.fallback])}
    short_before = _first_upstream(graph, order, set(fell_short))
    rejected_before = _first_upstream(graph, order, {step.id for step in sop.steps if isinstance(step, HumanStep)})
    out: dict[str, tuple[Skippable, ...]] = {}
    for step in sop.steps:
        if type(step) is not KINDS[step.kind].model:
            continue  # a stand-in for a step that failed validation: what it outputs is not known
        fields = frozenset(step.outputs()) - set(COMMON_OUTPUTS)
        if not fields:
            continue
        spelled = step.id.replace("-", "_")
        ways = [Skippable(spelled, "the run was cancelled first", fields, state="cancelled", ended="cancelled")]
        if step.id in failing:
            ways.append(Skippable(spelled, f"it failed, and the run with it: {failing[step.id]}", fields,
                                  state="failed", ended="failed"))
        if step.id in failed_before:
            dep = failed_before[step.id]
            cause = (f"step `{dep}` it needs failed" if dep in failing else
                     f"step `{dep}` it needs timed out and its fallback `{fell_back[dep]}` failed")
            ways.append(Skippable(spelled, f"{cause}, and the run with it", fields, state="blocked", ended="failed"))
        if step.id in short_before:
            dep = short_before[step.id]
            ways.append(Skippable(spelled, f"step `{dep}` it needs timed out and its fallback `{fell_short[dep]}` "
                                           "ended without standing in for it (skipped), and the run ended done",
                                  fields, state="blocked", ended="done"))
        if step.id in rejected_before:
            ways.append(Skippable(spelled, f"step `{rejected_before[step.id]}` it needs was rejected, and the run "
                                           "with it", fields, state="blocked", ended="rejected"))
        out[spelled] = out[step.id] = tuple(ways)
    return out


def _may_not_stand_in(fallback: StepBase | None, stands_in_for: int) -> bool:
    """Whether a fallback may end without standing in: skipped by its own ``when`` or ``on_timeout: skip``, or done
    already standing in for another step when this one times out (it is the fallback of more than one)."""
    return fallback is not None and (fallback.when is not None or fallback.on_timeout == "skip" or stands_in_for > 1)


def _fails(step: StepBase) -> str | None:
    """Why ``step`` may fail (and fail its run), or None: its deadline (``on_timeout: fail``), its own work (the
    kind's), or, for any automated step, its ``timeout``: its Prefect task fails when the step outlasts it, even a
    notify step, which fails for no message nobody got (its delivery to a slow webhook)."""
    kind = KINDS[step.kind]
    if step.on_timeout == "fail":
        return "`on_timeout: fail`"
    if kind.fails is None and kind.automated and step.timeout is not None:
        return f"its `timeout: {format_duration(step.timeout)}` may end it first"
    return kind.fails


def _first_upstream(graph: StepGraph, order: list[str], marked: set[str]) -> dict[str, str]:
    """For each step, one step of ``marked`` it needs, directly or through others (``order``: each step after those
    it needs), when it needs any: one walk, for a chain of 10,000 steps too."""
    found: dict[str, str] = {}
    for step_id in order:
        for dep in graph.deps.get(step_id, ()):
            hit = dep if dep in marked else found.get(dep)
            if hit is not None:
                found[step_id] = hit
                break
    return found
