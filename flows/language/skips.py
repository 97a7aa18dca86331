"""Reading a step that may have been skipped: its own fields are absent then, and reading one fails.

A step is skipped when its ``when`` is false, when it lies on the branch of a check not taken,
when it times out with ``on_timeout: skip``, and when it is a fallback its step did not need.
The engine then presents it to templates (``flows.engine.view.variables``) with the common
fields only: ``state`` and ``outcome`` ``'skipped'``, ``actor`` none, ``note`` why, and
``finished_at``; a form field, ``status``, ``result``, ``delivered``… are not there, and the
strict environment refuses to compare or print what is not there. :func:`skip_problems` tries
an expression or a template with each step it reads that may be skipped presented that way,
and says what would fail.

Only cases that can happen are tried: values that make the skipped step's own ``when`` true, a
check result that takes its branch, or a ``guard`` (the reading step's own ``when``) that is
false are left out, since then the step was not skipped or the reader does not run.

A step whose deadline hands it to a fallback (``on_timeout: fallback:<step>``) ends ``timed_out``, as bare as a
skipped one, and the steps that need it go on once the fallback is done: it is tried the same way.

A follow-up reads the run as it ended, and an end may leave steps unfinished (``cancelled``,
``failed``, ``blocked``: :mod:`flows.language.unfinished`): those are tried the same way, each with
the ``run.outcome`` that leaves it so.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import UndefinedError

from flows.language.expressions import TemplateProblem, analyse, compiled_expression, parse, render
from flows.language.samples import MAX_TRIES, UNKNOWN, Typed, context_of, safe_to_run
from flows.language.steps.base import COMMON_OUTPUTS


@dataclass(frozen=True)
class Skippable:
    """One way a step may end skipped: why, and the fields it then lacks."""

    #: its id as an expression writes it (``steps.<this>``)
    spelled: str
    #: why it may be skipped, as the author reads it ("its `when` is false")
    why: str
    #: its own outputs (all but the common ones): absent when it is skipped
    fields: frozenset[str]
    #: its own ``when``: a skip for that reason means it was false
    when: str | None = None
    #: a check whose branch leaves it out (its id as written) and the result that does
    branch: tuple[str, bool] | None = None
    #: its state (and outcome) as the engine then presents it: ``skipped``; ``timed_out`` when its deadline passed and
    #: its fallback took over (the steps that need it go on once that one is done); a run's end may leave it
    #: ``cancelled``, ``blocked`` (a step it needs failed or was rejected) or ``failed`` (``flows.language.unfinished``)
    state: str = "skipped"
    #: how the run ended when it is left out this way (``run.outcome``, which only a follow-up reads), if it did
    ended: str | None = None

    @property
    def skipped(self) -> bool:
        """Whether it is skipped (else its run ended without it finishing)."""
        return self.state == "skipped"


@dataclass(frozen=True)
class Reach:
    """What must hold for a step to run at all: its own ``when``, and each check whose branch lists it took it
    (a check that did not run takes no ``then``: its ``else`` runs)."""

    when: str | None = None
    #: (the check's id as written, whether the step is in its ``then``, what the check needs to run)
    checks: tuple[tuple[str, bool, Reach], ...] = ()
    #: False for a step that failed validation (its `when` is not known): nothing is told about what reads it
    known: bool = True

    def expressions(self) -> tuple[str, ...]:
        """Every ``when`` this reach reads, its checks' included."""
        return (*((self.when,) if self.when else ()), *(e for _, _, reach in self.checks for e in reach.expressions()))

    def results(self) -> tuple[str, ...]:
        """The checks (ids as written) whose result this reach reads."""
        return tuple(r for check, _, reach in self.checks for r in (check, *reach.results()))

    def runs(self, context: dict[str, Any], skipped: str) -> bool:
        """False when, with these values and step ``skipped`` skipped, the step certainly does not run (or
        whether it runs is not known)."""
        if not self.known:
            return False
        if self.when is not None and _holds(self.when, context) is False:
            return False
        for check, then, reach in self.checks:
            if check == skipped or not reach.runs(context, skipped):
                if then:
                    return False
                continue
            result = context.get("steps", {}).get(check, {}).get("result")
            if isinstance(result, bool) and result != then:
                return False
        return True


def _presented(skip: Skippable) -> dict[str, Any]:
    """A step as the engine presents one left out this way: its common fields only (``note`` is the reason's text,
    ``finished_at`` a time)."""
    return {"state": skip.state, "outcome": skip.state, "actor": None, "note": UNKNOWN, "finished_at": UNKNOWN}


_MISSING = re.compile(r"has no attribute '([^']*)'")


def skip_problems(text: str, field: str, skips: Mapping[str, tuple[Skippable, ...]],
                  typed: Mapping[tuple[str, ...], Typed], *, expression: bool, reach: Reach = Reach()) -> list[str]:
    """What fails in ``text`` (an expression, or a template when ``expression`` is False) when a step it reads a
    field of is skipped: ``skips`` the ways each step may be, by its id as written; ``typed`` the paths of declared
    type (others are unknown); ``reach`` what the reading step needs to run (its ``when`` left out when ``text``
    is that ``when``)."""
    read = skippable_reads(text, skips, expression=expression)
    if not read:
        return []
    ways = tuple(skip for step in read for skip in skips[step])
    try:
        return list(_problems(text, field, ways, tuple(typed.items()), expression, reach))
    except TypeError:  # a sample that cannot be a cache key
        return _tried(text, field, ways, dict(typed), expression, reach)


def skippable_reads(text: str, skips: Mapping[str, tuple[Skippable, ...]], *, expression: bool) -> list[str]:
    """The steps (ids as written) that may be skipped whose own fields ``text`` reads (cheap: a template's
    references are remembered)."""
    try:
        refs = analyse(text, expression)
    except TemplateProblem:
        return []  # reported on its own
    return sorted({ref[1] for ref in refs if len(ref) > 2 and ref[0] == "steps" and ref[1] in skips
                   and any(ref[2] in skip.fields for skip in skips[ref[1]])})


@lru_cache(maxsize=1024)
def _problems(text: str, field: str, ways: tuple[Skippable, ...], typed: tuple[tuple[tuple[str, ...], Typed], ...],
              expression: bool, reach: Reach) -> tuple[str, ...]:
    return tuple(_tried(text, field, ways, dict(typed), expression, reach))


def _refs(texts: tuple[str, ...], expression: bool) -> list[tuple[str, ...]] | None:
    """The paths the texts read; None when one cannot be parsed or could be costly to run."""
    refs: list[tuple[str, ...]] = []
    for text in texts:
        try:
            if not safe_to_run(parse(text, expression=expression)):
                return None
            refs.extend(analyse(text, expression))
        except TemplateProblem:
            return None
    return refs


def _tried(text: str, field: str, ways: tuple[Skippable, ...], typed: dict[tuple[str, ...], Typed], expression: bool,
           reach: Reach) -> list[str]:
    problems: list[str] = []
    told: set[str] = set()
    mine, gates = _refs((text,), expression), _refs(reach.expressions(), True)
    if mine is None or gates is None:
        return []
    results = [("steps", check, "result") for check in reach.results()]
    for skip in ways:
        if skip.spelled in told:
            continue
        theirs = _refs((skip.when,) if skip.when else (), True)
        if theirs is None:
            continue
        refs = [ref for ref in dict.fromkeys((*mine, *gates, *theirs, *results)) if ref[:2] != ("steps", skip.spelled)]
        sampled = [ref for ref in refs if ref in typed]
        fixed = {ref: UNKNOWN for ref in refs if ref not in typed and ref not in results}
        for combination in itertools.islice(itertools.product(*(typed[ref].samples for ref in sampled)), MAX_TRIES):
            values = {**fixed, **dict(zip(sampled, combination, strict=True))}
            if skip.branch is not None:  # the check took the other branch: that is why this step was skipped
                values = {**values, ("steps", skip.branch[0], "result"): skip.branch[1]}
            if skip.ended is not None:  # the run ended so: that is why this step did not finish
                values = {**values, ("run", "outcome"): skip.ended}
            context = context_of(values)
            if context is None:
                return problems  # one path inside another: a whole mapping is read, not tried
            steps = context.setdefault("steps", {})
            if not isinstance(steps, dict):
                return problems
            steps[skip.spelled] = _presented(skip)
            if skip.when is not None and _holds(skip.when, context) is not False:
                continue  # its `when` held (or cannot be told): it was not skipped for it
            if not reach.runs(context, skip.spelled):
                continue  # the reader does not run either: nothing is read
            missing = _missing(text, context, expression, skip)
            if missing is not None:
                told.add(skip.spelled)
                problems.append(_problem(field, skip, missing))
                break
    return problems


def _problem(field: str, skip: Skippable, missing: str) -> str:
    """What to tell: where it fails, why, and the guard to write."""
    step, name = f"`{skip.spelled}`", f"steps.{skip.spelled}.{missing}"
    when, such, guard = (("is skipped", "a skipped step", "outcome != 'skipped'") if skip.skipped else
                         ("did not finish", "a step that did not finish", "outcome == 'done'"))
    return (f"`{field}` would fail whenever step {step} {when} ({skip.why}): {such} has no `{missing}` (only "
            f"{', '.join(COMMON_OUTPUTS)}); write `{name} | default(…)`, or test `steps.{skip.spelled}.{guard} and …` "
            "first")


def _holds(expression: str, context: dict[str, Any]) -> bool | None:
    """Whether an expression is true with these values; None when it cannot be evaluated."""
    try:
        return bool(compiled_expression(expression)(**context))
    except Exception:  # noqa: BLE001 - it fails on its own, which its own check reports
        return None


def _missing(text: str, context: dict[str, Any], expression: bool, skip: Skippable) -> str | None:
    """The skipped step's field whose absence makes ``text`` fail with these values, or None."""
    try:
        if expression:
            compiled_expression(text)(**context)
        else:
            render(text, context)
    except UndefinedError as exc:
        found = _MISSING.search(str(exc))
        return found.group(1) if found and found.group(1) in skip.fields else None
    except Exception:  # noqa: BLE001 - anything else is no skipped step's doing
        return None
    return None
