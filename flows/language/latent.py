"""Cross-checks of what would otherwise fail only later: when a run starts, a step runs, a trigger fires.

Each rule here was once accepted by ``sop validate`` and then failed at 3 a.m. (issue #16): a
branch that both runs and skips a step, an approval nobody can give, a URL no HTTP client
takes, a trigger that can never fill a required input, a ladder rung past any date, ladder rungs out of
order, a ``when`` or ``check`` that fails with the values its fields can have. Called by
:func:`flows.language.crosscheck.check_sop`; each function returns every problem it finds.
"""

from __future__ import annotations

import re

from flows.language.config import Site
from flows.language.durations import MAX_DURATION, format_duration
from flows.language.expressions import TemplateProblem, url_base_references
from flows.language.followups import DEFAULT_WHEN, OUTCOMES, fixed_value_problem
from flows.language.ladder import LadderEntry, misordered
from flows.language.loader import Document, SpecError, dotted
from flows.language.samples import Typed, expression_problems, field_typed, output_typed
from flows.language.skips import Reach, Skippable, skip_problems, skippable_reads
from flows.language.spec import ScheduleTrigger, Sop
from flows.language.steps import KINDS
from flows.language.steps.base import COMMON_OUTPUTS, StepBase
from flows.language.steps.http import HttpStep
from flows.language.steps.human import HumanStep
from flows.language.unfinished import unfinished

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_latent(sop: Sop, doc: Document, site: Site | None) -> list[SpecError]:
    """Every rule of this module (``site`` None: the rules that need config are skipped)."""
    errors = [*_branches(sop, doc), *_urls(sop, doc), *_trigger_inputs(sop, doc), *_ladder_offsets(sop, doc),
              *_ladder_order(sop, doc), *_expressions(sop, doc), *_follow_up_expressions(sop, doc)]
    if site is not None:
        errors.extend(_approvals(sop, doc, site))
    return errors


def _branches(sop: Sop, doc: Document) -> list[SpecError]:
    """A step named in both branches of one check would be skipped whichever way it goes."""
    errors: list[SpecError] = []
    for i, step in enumerate(sop.steps):
        taken: dict[str, str] = {}
        for branch in step.branches():
            for j, target in enumerate(branch.steps):
                if target in taken:
                    why = ("is listed twice in it" if taken[target] == branch.field
                           else f"is also in `{taken[target]}`: one of the two branches is always skipped, so it never runs")
                    errors.append(doc.error(("steps", i, branch.field, j), f"step `{target}` {why}"))
                else:
                    taken[target] = branch.field
    return errors


def _approvals(sop: Sop, doc: Document, site: Site) -> list[SpecError]:
    """An approval needs ``count`` distinct people: the approver roles must have that many members."""
    errors: list[SpecError] = []
    for i, step in enumerate(sop.steps):
        if not isinstance(step, HumanStep) or step.approval is None:
            continue
        approval = step.approval
        if not all(role in site.roles for role in approval.approvers):
            continue  # an unknown role is reported on its own
        people = {member for role in approval.approvers for member in site.roles[role].members}
        if approval.count > len(people):
            errors.append(doc.error(("steps", i, "approval", "count"),
                                    f"{approval.count} distinct approvers are needed, but "
                                    f"{', '.join(approval.approvers)} {'has' if len(approval.approvers) == 1 else 'have'} "
                                    f"only {len(people)} member(s) ({', '.join(sorted(people))}): the step could never be approved"))
    return errors


def _urls(sop: Sop, doc: Document) -> list[SpecError]:
    """An http step's URL must be http(s), judged from the text before its first template; and its base (what goes
    in unencoded) may read only the site's ``config``."""
    errors: list[SpecError] = []
    for i, step in enumerate(sop.steps):
        if not isinstance(step, HttpStep):
            continue
        url = step.request.url
        if (problem := _untrusted_base(url)) is not None:
            errors.append(doc.error(("steps", i, "request", "url"), problem))
        literal = url.split("{", 1)[0].strip()
        if not literal and "{" in url:
            continue  # the whole start comes from a template (``{{ config.gateway }}/x``): known only at run time
        scheme = _SCHEME.match(literal)
        if scheme and scheme.group(1).lower() in ("http", "https") and literal.lower().startswith(f"{scheme.group(1).lower()}://"):
            continue
        if "{" in url and ("http://".startswith(literal.lower()) or "https://".startswith(literal.lower())):
            continue  # ``http{{ s }}://…``: the rest comes from a template
        got = f"scheme `{scheme.group(1)}:`" if scheme else "no scheme"
        errors.append(doc.error(("steps", i, "request", "url"),
                                f"expected an http:// or https:// URL, got {url!r} ({got})"))
    return errors


def _untrusted_base(url: str) -> str | None:
    """What is wrong with the base of a URL template that reads anything but ``config``, or None."""
    if "{" not in url:
        return None
    try:
        reads = [ref for ref in url_base_references(url) if ref[0] != "config"]
    except TemplateProblem:
        return None  # reported on its own
    if not reads:
        return None
    names = ", ".join(dict.fromkeys(f"`{'.'.join(ref)}`" for ref in reads))
    return (f"the URL's base address (before the first `/`, `?` or `#` the URL writes) reads {names}: the base goes "
            "into the request as it is (only values after it are percent-encoded), so a value from a run could send "
            "the call to another host; take the base from config (`{{ config.gateway }}/…`) and put run values "
            "after a `/`")


def _trigger_inputs(sop: Sop, doc: Document) -> list[SpecError]:
    """A trigger must give every input a run requires, and its fixed values must fit: else it never starts a run."""
    errors: list[SpecError] = []
    required = [name for name, spec in sop.inputs.items() if spec.is_required and spec.default is None]
    for i, trigger in enumerate(sop.triggers):
        missing = [name for name in required if name not in trigger.inputs]
        if missing:
            kind = "schedule" if isinstance(trigger, ScheduleTrigger) else trigger._kind  # type: ignore[attr-defined]
            names = ", ".join(f"`{name}`" for name in missing)
            errors.append(doc.error(("triggers", i), f"this {kind} trigger can never start a run: it gives no value for "
                                                     f"the required input(s) {names} (add them to its `inputs`, or give "
                                                     "the input a default)"))
        for name, value in trigger.inputs.items():
            spec = sop.inputs.get(name)
            if spec is None:
                continue  # unknown inputs are reported on their own; a template is known only when it fires
            if (problem := fixed_value_problem(name, spec, value)) is not None:
                errors.append(doc.error(("triggers", i, "inputs", name), problem))
    return errors


def _ladder_offsets(sop: Sop, doc: Document) -> list[SpecError]:
    """A percent rung is a share of the step's due; past MAX_DURATION it would be armed beyond any date."""
    errors: list[SpecError] = []
    told: set[tuple] = set()  # the SOP's ladder is shared: one error per rung
    for i, step in enumerate(sop.steps):
        if step.due is None:
            continue
        own = step.escalation is not None
        for j, entry in enumerate(sop.ladder_for(step)):
            if entry.percent is not None and step.due * (entry.percent / 100) > MAX_DURATION:
                offset = step.due * (entry.percent / 100)
                path = ("steps", i, "escalation", j, "at") if own else ("escalation", j, "at")
                if path in told:
                    continue
                told.add(path)
                errors.append(doc.error(path, f"{entry.at} of step `{step.id}`'s due {format_duration(step.due)} is "
                                              f"{format_duration(offset)}, longer than the longest duration "
                                              f"{format_duration(MAX_DURATION)}"))
    return errors



def _ladder_order(sop: Sop, doc: Document) -> list[SpecError]:
    """Rungs fire in the order written (each is armed when the one above fires): written out of order,
    a rung would fire late; after an ``every`` without ``max``, never. Each ladder is judged with the due
    of every human step it applies to (a ``%`` rung is a share of it), one error per rung."""
    ladders: list[tuple[tuple, list[LadderEntry], list[HumanStep]]] = [
        (("escalation",), sop.escalation,
         [s for s in sop.steps if isinstance(s, HumanStep) and s.escalation is None])]
    ladders += [(("steps", i, "escalation"), step.escalation, [step] if isinstance(step, HumanStep) else [])
                for i, step in enumerate(sop.steps) if step.escalation is not None]
    errors: list[SpecError] = []
    for base, ladder, steps in ladders:
        endless = next((j for j, entry in enumerate(ladder[:-1]) if entry.every is not None and entry.max is None), None)
        if endless is not None:
            after = ", ".join(dotted((*base, k)) for k in range(endless + 1, len(ladder)))
            rungs = "rung" if endless + 2 == len(ladder) else "rungs"
            errors.append(doc.error((*base, endless, "every"),
                                    f"`every: {format_duration(ladder[endless].every)}` without `max` repeats until the "  # type: ignore[arg-type]
                                    f"step is done, so the {rungs} after it ({after}) never "
                                    f"{'fires' if rungs == 'rung' else 'fire'}: put it last, or give it a `max`"))
        for step in steps or [None]:
            wrong = misordered(ladder, step.due if step is not None else None)
            if wrong is None:
                continue
            entry, above = ladder[wrong.rung], ladder[wrong.above]
            if above.every is not None:
                what = (f"the last repeat of {dotted((*base, wrong.above))} above it "
                        f"(`every: {format_duration(above.every)}`, max {above.max}, "
                        f"{format_duration(wrong.above_offset)} after ready)")
            else:
                what = f"{dotted((*base, wrong.above))} above it (`at: {above.at}`)"
                if (entry.percent is None) != (above.percent is None) and step is not None and step.due is not None:
                    what += (f" for step `{step.id}` (due {format_duration(step.due)}: "
                             f"{format_duration(wrong.offset)} versus {format_duration(wrong.above_offset)} after ready)")
            errors.append(doc.error((*base, wrong.rung, "at"),
                                    f"`at: {entry.at}` is earlier than {what}: rungs fire in the order written, so it "
                                    "would fire late, right after that one; list them earliest first (increasing `at`)"))
            break  # the SOP's ladder is shared: one error for it, with the first step that shows it
    return errors


def _typed_paths(sop: Sop) -> dict[tuple[str, ...], Typed]:
    """The paths an expression may read whose type the SOP declares: inputs, form fields, typed outputs."""
    typed: dict[tuple[str, ...], Typed] = {}
    for name, spec in sop.inputs.items():
        found = field_typed(f"inputs.{name}", spec, f"whenever a run starts without `inputs.{name}` (an optional "
                                                    "input without a default is none then)")
        if found is not None:
            typed[("inputs", name)] = found
    for step in sop.steps:
        if type(step) is not KINDS[step.kind].model:
            continue  # a stand-in for a step that failed validation: what it outputs is not known
        for spelled in dict.fromkeys((step.id, step.id.replace("-", "_"))):
            if isinstance(step, HumanStep):
                for name, spec in step.form.items():
                    label = f"steps.{spelled}.{name}"
                    found = field_typed(label, spec, f"whenever `{label}` is left empty (an optional field is none then)")
                    if found is not None:
                        typed[("steps", spelled, name)] = found
            for output in step.outputs():
                found = output_typed(f"steps.{spelled}.{output}", step.kind, output)
                if found is not None:
                    typed[("steps", spelled, output)] = found
    return typed


def _skippable(sop: Sop) -> dict[str, tuple[Skippable, ...]]:
    """The ways each step may end skipped (or timed out, its fallback taking over), by each spelling of its id (only
    steps with fields of their own)."""
    fallbacks = {step.fallback: step.id for step in sop.steps if step.fallback}
    listed = _listed_in(sop)
    out: dict[str, tuple[Skippable, ...]] = {}
    for step in sop.steps:
        if type(step) is not KINDS[step.kind].model:
            continue  # a stand-in for a step that failed validation: what it outputs is not known
        fields = frozenset(step.outputs()) - set(COMMON_OUTPUTS)
        spelled = step.id.replace("-", "_")
        ways: list[Skippable] = []
        if step.when is not None:
            ways.append(Skippable(spelled, "its `when` is false", fields, when=step.when))
        if step.on_timeout == "skip":
            ways.append(Skippable(spelled, "it timed out: `on_timeout: skip`", fields))
        if step.id in fallbacks:
            ways.append(Skippable(spelled, f"it is the fallback of `{fallbacks[step.id]}`, not needed when that one is "
                                           "done in time", fields))
        if step.fallback:  # its steps go on once the fallback is done, and it has no fields then
            ways.append(Skippable(spelled, f"it timed out and `{step.fallback}` took over: `on_timeout: {step.on_timeout}`", fields,
                                  state="timed_out"))
        for check, then in listed.get(step.id, ()):
            ways.append(Skippable(spelled, f"check `{check}` takes its other branch", fields,
                                  branch=(check.replace("-", "_"), not then)))
        if ways and fields:
            out[spelled] = out[step.id] = tuple(ways)
    return out


def _listed_in(sop: Sop) -> dict[str, list[tuple[str, bool]]]:
    """Each step a check's branch lists: the checks, and whether it is in their ``then``."""
    listed: dict[str, list[tuple[str, bool]]] = {}
    for step in sop.steps:
        for branch in step.branches():
            for target in branch.steps:
                listed.setdefault(target, []).append((step.id, branch.field == "then"))
    return listed


def _reach(by_id: dict[str, StepBase], step_id: str, listed: dict[str, list[tuple[str, bool]]], own_when: bool,
           seen: frozenset[str] = frozenset()) -> Reach:
    """What step ``step_id`` needs to run (its ``when`` too when ``own_when``); a cycle (reported on its own) ends it."""
    checks = tuple((check.replace("-", "_"), then, _reach(by_id, check, listed, True, seen | {step_id}))
                   for check, then in listed.get(step_id, ()) if check not in seen and check != step_id)
    step = by_id[step_id]
    return Reach(step.when if own_when else None, checks, known=type(step) is KINDS[step.kind].model)


def _expressions(sop: Sop, doc: Document) -> list[SpecError]:
    """A step's ``when`` and a check's expression, tried with the values the fields they read can have; these and
    the step's other templates (its description too: its page and its messages show it; a title is never a template), tried with
    each step they read that may be skipped skipped."""
    typed: dict[tuple[str, ...], Typed] | None = None
    skips: dict[str, tuple[Skippable, ...]] | None = None
    listed: dict[str, list[tuple[str, bool]]] | None = None
    by_id: dict[str, StepBase] | None = None
    errors: list[SpecError] = []
    for i, step in enumerate(sop.steps):
        templates = [(step.when, ("when",), True), (step.description, ("description",), False)] + [(t.value, t.path, t.expression)
                                                                     for t in KINDS[step.kind].templates(step)]
        for text, path, expression in templates:
            if not isinstance(text, str) or (not expression and "{" not in text):
                continue
            typed = _typed_paths(sop) if typed is None else typed
            problems = expression_problems(text, str(path[-1]), typed) if expression else []
            skips = _skippable(sop) if skips is None else skips
            if not problems and skippable_reads(text, skips, expression=expression):  # (a fault for every value first)
                listed = _listed_in(sop) if listed is None else listed
                by_id = {s.id: s for s in sop.steps} if by_id is None else by_id
                reach = _reach(by_id, step.id, listed, own_when=path != ("when",))
                problems = skip_problems(text, dotted(path), skips, typed, expression=expression, reach=reach)
            for problem in problems:
                errors.append(doc.error(("steps", i, *path), problem))
    return errors


#: what a follow-up reads of the run that ended, beyond a step's: its outcome (one of OUTCOMES) and whether it met
#: its deadline
_ENDED_RUN = {("run", "outcome"): Typed("run.outcome", "string", OUTCOMES, enum=OUTCOMES),
              ("run", "deadline_met"): Typed("run.deadline_met", "boolean", (True, False))}


def _follow_up_expressions(sop: Sop, doc: Document) -> list[SpecError]:
    """A follow-up's ``when`` tried as a step's is (:func:`_expressions`), over the run as it ended; it and the
    follow-up's inputs, with each step they read that may be skipped skipped, or left unfinished by the run's end
    (:mod:`flows.language.unfinished`), where the follow-up starts then (the inputs only when ``when`` held)."""
    if not sop.follow_ups:
        return []
    typed = {**_typed_paths(sop), **_ENDED_RUN}
    skipped, ended = _skippable(sop), unfinished(sop)
    skips = {spelled: (*skipped.get(spelled, ()), *ended.get(spelled, ())) for spelled in {*skipped, *ended}}
    errors: list[SpecError] = []
    for i, follow_up in enumerate(sop.follow_ups):
        templates = [(follow_up.when, ("when",), True)] + [(value, ("inputs", name), False)
                                                          for name, value in follow_up.inputs.items()]
        for text, path, expression in templates:
            if not isinstance(text, str) or (not expression and "{" not in text):
                continue
            problems = expression_problems(text, str(path[-1]), typed) if expression else []
            if not problems and skippable_reads(text, skips, expression=expression):
                reach = Reach(None if path == ("when",) else follow_up.when or DEFAULT_WHEN)
                problems = skip_problems(text, dotted(path), skips, typed, expression=expression, reach=reach)
            errors.extend(doc.error(("follow_ups", i, *path), problem) for problem in problems)
    return errors
