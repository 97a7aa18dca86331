"""``kind: human`` — assign a person, wait for a report, check it against the step's form.

Waiting holds nothing: the flow run is suspended and the report arrives through the
engine (a person's page or link, ``sop done``, the API), which writes it to the ledger and
then resumes the flow run. The Prefect UI's resume form reports nothing (see
``flows.prefect.resume``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from flows.language.actors import Actor, as_actor
from flows.language.config import Site
from flows.language.fields import FieldSpec, OptionalDuration, Strict, Word, length_problem, nul_problem
from flows.language.steps.base import Activation, StepBase, StepKind

#: how long a hold may last when neither the step nor its SOP says (``max_hold``)
DEFAULT_MAX_HOLD = timedelta(days=1)


def hold_reasons(sop: Any, step: HumanStep) -> list[str]:
    """What a step may be put on hold for: its own ``waiting_for``, else its SOP's (empty: no holds)."""
    return list(step.waiting_for if step.waiting_for is not None else sop.waiting_for)


def max_hold(sop: Any, step: HumanStep) -> timedelta:
    """How long a hold of this step may last before it ends and escalates."""
    return step.max_hold or sop.max_hold or DEFAULT_MAX_HOLD


class Approval(Strict):
    """Four-eyes: ``count`` distinct approvers from ``approvers`` roles, not the initiator."""

    approvers: list[str] = Field(min_length=1)
    count: int = Field(default=2, ge=1)
    distinct_from: Literal["initiator"] | None = "initiator"


class HumanStep(StepBase):
    """A person does it and reports through a form, by a due time."""

    kind: Literal["human"] = "human"
    assignee: str
    form: dict[str, FieldSpec] = Field(default_factory=dict)
    evidence: bool = False
    approval: Approval | None = None
    #: a rejection sends the work back to this earlier step (and the steps between), for another round
    on_reject: str | None = Field(default=None, description="an earlier step a rejection sends the work back to")
    max_rounds: int = Field(default=3, ge=1, le=20, description="rounds before a rejection stands")
    #: holds: what this step may wait for with its clock stopped (else the SOP's), and for how long
    waiting_for: list[Word] | None = Field(default=None, description="reasons this step may be put on hold for "
                                                                     "(else the SOP's `waiting_for`)")
    max_hold: OptionalDuration = Field(default=None, description="the longest hold before it escalates "
                                                                "(else the SOP's `max_hold`)")

    def outputs(self) -> set[str]:
        return super().outputs() | set(self.form) | {"evidence", "approvers"}


def activate(step: HumanStep, act: Activation) -> None:
    """The step goes to its assignee, who is paged; its due and first ladder rung are armed."""
    act.assign()


def summary(step: HumanStep) -> str:
    """``human → ops-lead, approval 2 of sec/ops``."""
    extra = f", approval {step.approval.count} of {'/'.join(step.approval.approvers)}" if step.approval else ""
    return f"human → {step.assignee}{extra}"


KIND = StepKind(model=HumanStep, activate=activate, summary=summary, implied_by="assignee")

PY_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool, "date": str}


class ReportRefused(ValueError):
    """A report that cannot be taken; ``problems`` names each field and what was expected."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class HumanReport:
    """What a person reports to finish (or refuse) a human step; ``actor`` is who, proven, and how it came.

    A bare name is taken as ``Actor(name, via="direct")`` (a Python caller).
    """

    actor: Actor
    outcome: Literal["done", "rejected"] = "done"
    values: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    evidence: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.actor = as_actor(self.actor)

    @property
    def person(self) -> str:
        return self.actor.person


def upstream(sop: Any, step_id: str) -> set[str]:
    """Every step ``step_id`` waits on, directly or through others."""
    seen: set[str] = set()
    todo = list(sop.dependencies(sop.step(step_id)))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(sop.dependencies(sop.step(current)))
    return seen


def rework_loop(sop: Any, step: HumanStep) -> list[str]:
    """The steps a rejection of ``step`` sends back (its ``on_reject``, the steps between, itself), in SOP order.

    Empty when ``on_reject`` is not an earlier step of ``step``.
    """
    target = step.on_reject
    before = upstream(sop, step.id)
    if not target or target not in before:
        return []
    between = {s for s in before if s == target or target in upstream(sop, s)}
    return [s.id for s in sop.steps if s.id in between or s.id == step.id]


def members(site: Site, name: str | None) -> set[str]:
    """The people a name stands for: a role's members, or the person named."""
    if not name:
        return set()
    role = site.roles.get(name)
    if role is not None:
        return set(role.members)
    return {name} if name in site.people else set()


def lead_chain(site: Site, role_name: str | None) -> set[str]:
    """The people above a role: the members of its lead, of that role's lead, and so on up to the top of the chain
    (``lead: none``). Each of them may oversee the role's steps (take them over, hand them to anyone)."""
    people: set[str] = set()
    seen = {role_name}
    role = site.roles.get(role_name) if role_name else None
    while role is not None and role.lead and role.lead not in seen:  # a loop in config stops, not hangs
        seen.add(role.lead)
        people |= members(site, role.lead)
        role = site.roles.get(role.lead)
    return people


def approvers_besides(site: Site, approval: Approval, initiator: str | None) -> list[str]:
    """Who may give ``approval`` on a run ``initiator`` started: its approver roles' members, in config's order, less
    the initiator when the four-eyes rule holds (``distinct_from: initiator``)."""
    people = dict.fromkeys(m for role in approval.approvers for m in site.roles[role].members)
    return [m for m in people if not (approval.distinct_from == "initiator" and m == initiator)]


def in_access_list(site: Site, person: str, access: str) -> bool:
    """Whether ``person`` is one of ``settings.web.<access>`` (``operators``, ``auditors``): people, or roles whose
    members they are (:func:`members`). The pages, the terminal and the holds ask the same list."""
    return any(person in members(site, name) for name in getattr(site.settings.web, access))


def may_act(step: HumanStep, site: Site, person: str, *, owner: str | None = None,
            ladder: list[Any] | None = None) -> set[str]:
    """Who may act on the step: the assignee's people, approvers, the assignee role's lead chain (its lead, that
    role's lead, … up to the top: :func:`lead_chain`), the owner, and the people its escalation ``ladder`` names (a
    level pages them to take it over: they must be able to).

    Returns the set (``person in may_act(...)`` is the check); the reason for a refusal names it.
    """
    allowed = members(site, step.assignee) | lead_chain(site, step.assignee)
    if step.approval is not None:
        for name in step.approval.approvers:
            allowed |= members(site, name)
    allowed |= members(site, owner)
    for entry in ladder or []:
        for target in entry.notify:  # ladder words (assignee, lead, backup, owner) are covered above
            allowed |= members(site, target.partition(":")[2] if ":" in target else target)
    return allowed


def coerce_values(step: HumanStep, raw: dict[str, Any]) -> dict[str, Any]:
    """Turn ``-f key=value`` strings into the form's types; unknown fields are refused."""
    out: dict[str, Any] = {}
    problems = []
    for name, value in raw.items():
        spec = step.form.get(name)
        if spec is None:
            problems.append(_not_in_form(step, name))
            continue
        if isinstance(value, str) and spec.type != "string":
            try:
                value = spec.coerce(value)
            except ValueError as exc:
                problems.append(f"field `{name}`: {exc}")
                continue
        out[name] = value
    if problems:
        raise ReportRefused(problems)
    return out


#: evidence is something an auditor can follow months later: a link (``https://…``, ``drill://…``, any scheme) or
#: an uploaded file's reference (``sha256:<hex> name (n bytes)``), not a free-text remark
_LINK = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S")
#: schemes that are code for a browser to run, not an address of anything (refused as evidence)
_SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "data"})


def _not_a_link(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "…"
    return (f"evidence {shown.strip()!r} is not a link: give the address where it can be found (https://…) "
            "or attach the file; a remark goes in the note")


def evidence_problems(links: list[str]) -> list[str]:
    """What is wrong with evidence links: each one not a link, or one whose scheme runs code in a browser."""
    return [*(_not_a_link(link) for link in links if not _LINK.match(link.strip())),
            *(f"evidence {link.strip()[:60]!r}: a {scheme}: address runs in a browser, it is no place where "
              "evidence is kept" for link in links if (scheme := link.strip().split(":", 1)[0].lower()) in _SCRIPT_SCHEMES)]


def check_report(step: HumanStep, report: HumanReport, *, initiator: str | None, approvals: list[str],
                 site: Site) -> None:
    """Raise ReportRefused unless the report fits the step (form, evidence, four-eyes)."""
    problems: list[str] = []
    actor = report.actor
    who = actor.person
    problems += [p for p in (nul_problem(report.note, "the note"), length_problem(report.note, "the note"),
                             *(nul_problem(link, "evidence") for link in report.evidence),
                             *(length_problem(link, "evidence") for link in report.evidence)) if p]
    if not who or not who.strip():
        problems.append("an actor is required (who did it?)")
    elif who not in site.people:
        from flows.language.actors import UnknownPerson

        problems.append(str(UnknownPerson(who, site)))
    if report.outcome == "done":
        for name, spec in step.form.items():
            if name not in report.values:
                if spec.is_required and spec.default is None:
                    problems.append(f"field `{name}` is required ({_expects(spec)})")
                continue
            problem = spec.check_answer(report.values[name])
            if problem:
                problems.append(f"field `{name}`: {problem}")
        for name in report.values:
            if name not in step.form:
                problems.append(_not_in_form(step, name))
        if step.evidence and not report.evidence:
            problems.append(f"step `{step.id}` needs evidence (a link or a file reference): pass --evidence")
    problems += evidence_problems(report.evidence)
    if step.approval is not None:
        approval = step.approval
        if approval.distinct_from == "initiator" and initiator and who == initiator:
            problems.append(f"{who} started this run and cannot approve it (four-eyes rule)")
        elif approval.distinct_from == "initiator" and initiator and actor.by == initiator:
            problems.append(f"{actor.by} started this run and cannot approve it for {who} (four-eyes rule)")
        if who in approvals:
            problems.append(f"{who} has already approved this step; another approver is needed")
        allowed = {m for role in approval.approvers for m in site.roles.get(role).members} if all(
            r in site.roles for r in approval.approvers) else set()
        if allowed and who not in allowed:
            problems.append(f"{who} is not an approver (members of {', '.join(approval.approvers)})")
    if problems:
        raise ReportRefused(problems)


def complete_values(step: HumanStep, values: dict[str, Any]) -> dict[str, Any]:
    """The reported values with every form field present: defaults filled, missing optional ones None."""
    return {name: values.get(name, spec.default) for name, spec in step.form.items()} | values


def _not_in_form(step: HumanStep, name: str) -> str:
    """A field the form does not have, with the nearest one it does (``confrimed``: did you mean ``confirmed``?)."""
    import difflib

    near = difflib.get_close_matches(name, list(step.form), n=1, cutoff=0.6)
    hint = f"; did you mean `{near[0]}`?" if near else ""
    return f"field `{name}` is not in the form of step `{step.id}`{hint} (fields: {', '.join(step.form) or 'none'})"


def _expects(spec: FieldSpec) -> str:
    return f"one of {spec.allowed}" if spec.enum else spec.type
