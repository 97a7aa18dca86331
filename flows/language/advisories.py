"""What `sop validate` warns about without refusing the file: valid, but probably not what the author meant.

Each function returns warnings located like errors (:class:`SpecError`); ``validate_paths`` hands
them to whoever asked (``warnings=``) and ``sop validate`` prints them after the errors, its exit
status unchanged. Loading the library for a run never reads them.
"""

from __future__ import annotations

from flows.language.loader import Document, SpecError
from flows.language.spec import Sop
from flows.language.steps.human import HumanStep


def sop_advisories(sop: Sop, doc: Document) -> list[SpecError]:
    """Every warning of one SOP."""
    return _ladders_paging_the_holder(sop, doc) + _once_and_retried(sop, doc)


def _once_and_retried(sop: Sop, doc: Document) -> list[SpecError]:
    """A ``once: true`` step with ``retries``: an attempt cut mid-way is not made again, but one that failed is,
    and a failed call (a timeout, a 502 from a proxy) may well have acted. Warned rather than refused: an author may
    know the endpoint answers an error only when nothing happened."""
    return [doc.error(("steps", i, "retries"), (
        f"step `{step.id}` is `once: true` (its action must not happen twice) but `retries: {step.retries}`: an "
        "attempt that failed is made again, and a call that timed out or a command that was killed may have acted "
        "already; write `retries: 0` unless a failure surely means nothing happened"))
        for i, step in enumerate(sop.steps) if getattr(step, "once", False) and step.retries > 0]


def _ladders_paging_the_holder(sop: Sop, doc: Document) -> list[SpecError]:
    """A rung (other than ``assignee``) that names the step's own assignee, as ``owner`` (the SOP's owner role is
    the assignee role), as the role itself or as the person, and nobody else: its page reaches only whoever holds
    the step (the pager tells them it is late, ``flows.engine.paging``), so nobody above them hears of it. A
    reminder is what ``assignee`` is for.

    Warned rather than refused: shipped SOPs do it (a lead's own step under the SOP's ladder), and the runtime
    decides whom such a page reaches. One warning per rung, naming the steps it applies to."""
    found: dict[tuple, list[str]] = {}  # rung path → "step (as target)"
    for i, step in enumerate(sop.steps):
        if not isinstance(step, HumanStep):
            continue
        own = step.escalation is not None
        for j, entry in enumerate(sop.ladder_for(step)):
            if not all(_is_self(target, sop, step) for target in entry.notify):
                continue  # someone beyond the holder is on the rung: they hear of it
            for k, target in enumerate(entry.notify):
                kind, _, name = target.rpartition(":")
                if kind not in ("", "role", "person"):
                    continue
                if name == "owner" and not kind and sop.owner == step.assignee:
                    why = f"`owner` (the SOP's owner role `{sop.owner}`)"
                elif name == step.assignee and name not in ("assignee", "owner", "lead", "backup"):
                    why = f"`{target}`"
                else:
                    continue
                path = ("steps", i, "escalation", j, "notify", k) if own else ("escalation", j, "notify", k)
                found.setdefault(path, []).append(f"{why}|{step.id}")
    warnings: list[SpecError] = []
    for path, hits in found.items():
        why = hits[0].split("|")[0]
        names = ", ".join(f"`{hit.split('|')[1]}`" for hit in hits)
        steps = f"step {names}" if len(hits) == 1 else f"steps {names}"
        fix = ("write `lead` to escalate (`assignee` is the reminder)" if path[0] == "steps" else
               f"give {'it' if len(hits) == 1 else 'them'} a ladder of {'its' if len(hits) == 1 else 'their'} own that "
               "escalates to `lead` (`assignee` is the reminder)")
        warnings.append(doc.error(path, f"{why} is also the assignee of {steps}: for "
                                        f"{'it' if len(hits) == 1 else 'them'} this rung reaches only the person who "
                                        f"holds the step (told it is late), and nobody above them hears of it; {fix}"))
    return warnings


def _is_self(target: str, sop: Sop, step: HumanStep) -> bool:
    """Whether a rung's target reaches only the step's own assignee (its holder)."""
    kind, _, name = target.rpartition(":")
    return (not kind and name in ("assignee", "backup")) or (not kind and name == "owner" and sop.owner == step.assignee) \
        or (kind in ("", "role", "person") and name == step.assignee)
