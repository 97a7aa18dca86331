"""Follow-ups: what an SOP starts when one of its runs ends (``follow_ups:``), and their checks.

The model is :class:`flows.language.spec.FollowUp`. A follow-up names another SOP of the library (``start``), when to start it (``when``, an
expression over the ended run; by default every end but a cancel), the inputs it gets
(templates over the ended run's inputs, steps, trigger and ``run.*``, with ``run.outcome``
and ``run.finished_at``), and the window it must be done in (``within``, from the run's end).

The key is ``follow_ups``, not the issue's ``then``: a check step's ``then`` already lists the
steps of the branch taken, and one word with two meanings in one file (step ids there, SOP
runs here) would make every error and every search about ``then`` ambiguous.

:func:`check_follow_ups` checks what one SOP cannot check alone, over the whole library: the
SOP named exists, takes the inputs given and is given those it requires, and no chain of
follow-ups comes back to where it began (a → b → a would start runs without end, so it is
refused; the engine also refuses at run time a follow-up whose SOP is already among the run's
ancestors, for a pinned text older than the library).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.language.fields import FieldSpec
from flows.language.loader import Document, SpecError

#: ``run.*`` fields a follow-up's templates may read besides a step's: how the run ended
FINISHED_RUN_FIELDS = ("outcome", "finished_at", "deadline_met")
#: the outcomes a run may end with, as ``run.outcome`` reads in a follow-up
OUTCOMES = ("done", "rejected", "failed", "cancelled")


#: the ends a follow-up without ``when`` does not start on: a cancelled run was called off by a person
NOT_BY_DEFAULT = ("cancelled",)
#: that rule as an expression over the ended run, as ``sop validate`` tries such a follow-up's inputs
DEFAULT_WHEN = f"run.outcome not in {list(NOT_BY_DEFAULT)!r}"


def starts_on(follow_up: Any, outcome: str) -> bool | None:
    """Whether a follow-up without ``when`` starts on this outcome (every end but a cancel); None: its ``when`` decides."""
    if follow_up.when is not None:
        return None
    return outcome not in NOT_BY_DEFAULT


def fixed_value_problem(name: str, spec: FieldSpec, value: Any) -> str | None:
    """What is wrong with a fixed (non-template) value given to an input, or None (a template: known only later)."""
    if value is None or (isinstance(value, str) and "{" in value):
        return None
    if isinstance(value, str) and spec.type != "string":
        try:
            value = spec.coerce(value)
        except ValueError as exc:
            return f"input `{name}`: {exc}"
    if spec.type == "number" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = spec.check_value(value) if not isinstance(value, (dict, list)) else f"expected {spec.type}, got {value!r}"
    return f"input `{name}`: {problem}" if problem else None


def check_follow_ups(sops: Mapping[str, Any], docs: Mapping[str, Document],
                     known: Mapping[str, Any] | None = None) -> list[SpecError]:
    """The library's follow-ups: each names an SOP of the library, fits its inputs, and no chain loops back.

    ``sops``: the SOPs to check (id → Sop), located in ``docs`` (id → its document); ``known``:
    every SOP a follow-up may name (default ``sops``; ``sop validate sops/a.yaml`` checks a
    against the whole library), None for one whose file does not validate (not checked further).
    """
    known = sops if known is None else known
    errors: list[SpecError] = []
    for sop_id, sop in sops.items():
        doc = docs[sop_id]
        for i, follow_up in enumerate(sop.follow_ups):
            base = ("follow_ups", i)
            if follow_up.start not in known:
                errors.append(doc.error((*base, "start"), f"unknown SOP `{follow_up.start}` "
                                                          f"(SOPs: {', '.join(sorted(known)) or 'none'})"))
                continue
            target = known[follow_up.start]
            if target is None:
                continue  # its file does not validate: its own errors say why
            for name, value in follow_up.inputs.items():
                spec = target.inputs.get(name)
                if spec is None:
                    accepted = ", ".join(target.inputs) or "none"
                    errors.append(doc.error((*base, "inputs", name), f"`{follow_up.start}` takes no input `{name}` "
                                                                     f"(its inputs: {accepted})", True))
                elif (problem := fixed_value_problem(name, spec, value)) is not None:
                    errors.append(doc.error((*base, "inputs", name), problem))
            missing = [n for n, s in target.inputs.items()
                       if s.is_required and s.default is None and n not in follow_up.inputs]
            if missing:
                names = ", ".join(f"`{n}`" for n in missing)
                errors.append(doc.error(base, f"this follow-up can never start `{follow_up.start}`: it gives no value "
                                              f"for its required input(s) {names} (add them to `inputs`)"))
    errors.extend(_cycles(sops, docs, known))
    return errors


def _cycles(sops: Mapping[str, Any], docs: Mapping[str, Document], known: Mapping[str, Any]) -> list[SpecError]:
    """A chain of follow-ups that comes back to an SOP on it: reported once, at the edge that closes it."""
    errors: list[SpecError] = []
    told: set[frozenset[str]] = set()
    for sop_id in sops:
        path = _loop_from(sop_id, known)
        if path is None or frozenset(path) in told:
            continue
        told.add(frozenset(path))
        sop = sops[sop_id]
        index = next(i for i, f in enumerate(sop.follow_ups) if f.start == path[1])
        what = "starts itself" if len(path) == 2 else f"form a cycle: {' → '.join(path)}"
        errors.append(docs[sop_id].error(("follow_ups", index, "start"),
                                         f"follow-ups {what}: each end would start the next run without end "
                                         "(a follow-up may not lead back to an SOP on its chain)"))
    return errors


def _loop_from(start: str, known: Mapping[str, Any]) -> list[str] | None:
    """The shortest chain of follow-ups from ``start`` back to ``start`` (``[a, b, a]``), or None."""
    frontier: list[list[str]] = [[start]]
    seen: set[str] = set()
    while frontier:
        nxt: list[list[str]] = []
        for path in frontier:
            sop = known.get(path[-1])
            for follow_up in getattr(sop, "follow_ups", None) or ():
                if follow_up.start == start:
                    return [*path, start]
                if follow_up.start not in seen:
                    seen.add(follow_up.start)
                    nxt.append([*path, follow_up.start])
        frontier = nxt
    return None


__all__ = ["DEFAULT_WHEN", "FINISHED_RUN_FIELDS", "NOT_BY_DEFAULT", "OUTCOMES", "check_follow_ups", "fixed_value_problem",
           "starts_on"]
