"""A person's load across open runs: which steps wait on them, and why (``sop status --for``, ``--people``).

:func:`why_theirs` is the one rule of what waits on a person: the home page ("Waiting for you"), the board's person
filter and ``sop status --for`` / ``--people`` all ask it. A step waits on someone who holds it (took it, or was
handed it), on its role's primary now or a member of its role while nobody holds it, and on someone its escalation
paged (:func:`escalations`: whom, and at which stage)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from flows.engine.board import BoardRun, BoardStep, by_urgency, open_board, seconds_left
from flows.engine.page_context import time_left
from flows.language.ladder import level_words
from flows.language.steps.human import members
from flows.ledger.schema import deliveries, records
from flows.ledger.vocabulary import RecordKind, StepState

#: why a step waits on a person; ``of their role``: a member who may take it, not the one it is paged to now
HOLDING, HANDED, ASSIGNED, OF_ROLE, ESCALATED = "holding", "handed", "assigned", "of their role", "escalated"


@dataclass(frozen=True)
class Theirs:
    """Why a step waits on a person: ``why`` (one of the words above), who handed it to them, the ladder level whose
    page reached them (not the highest its escalation reached since: that paged others)."""

    why: str
    by: str | None = None
    stage: str | None = None

    def __str__(self) -> str:
        if self.why == HANDED:
            return f"handed by {self.by}"
        if self.why == ESCALATED:
            return level_words(self.stage) or "escalated"  # "escalation stage 2": the level that paged them
        return self.why

    @property
    def load(self) -> bool:
        """Whether it counts in their load: what they hold, are paged for or were escalated to; not every step a
        member of its role could take (each step would count once for each member)."""
        return self.why != OF_ROLE


def why_theirs(site: Any, person: str, *, assignee: str | None, claimed_by: str | None, escalated: bool,
               primary: str | None = None, handed_by: str | None = None, level: str | None = None) -> Theirs | None:
    """Why a step waits on ``person``, None when it does not. Held by them (taken, or handed by ``handed_by``); else,
    while nobody holds it, assigned to them (the role's ``primary`` now, when known, or them by name); else escalated
    to them (``escalated``: its ladder paged them; ``level``: the level that did), even when someone else holds it;
    else, while nobody holds it, of their role (a member who may take it)."""
    if claimed_by and claimed_by == person:
        return Theirs(HANDED, by=handed_by) if handed_by else Theirs(HOLDING)
    mine = not claimed_by and (person == primary or person in members(site, assignee))
    if mine and person in (primary, assignee):
        return Theirs(ASSIGNED)
    if escalated:  # a member of its role paged as its backup or lead: theirs to see to, not only to take
        return Theirs(ESCALATED, stage=level)
    return Theirs(OF_ROLE) if mine else None


#: the pages that ask a person beyond a step's role to see to it (its ladder reached them)
ESCALATION_KINDS = ("escalated",)


def escalated_to(engine: Any, person: str, ids: list[str]) -> set[tuple[str, str]]:
    """The steps of runs ``ids`` (run id, step id) whose escalation ladder paged ``person`` (the board's person
    filter and the home page)."""
    return set(escalations(engine, ids, person).get(person, {}))


def escalations(engine: Any, ids: list[str], person: str | None = None) -> dict[str, dict[tuple[str, str], str | None]]:
    """Whom the escalations of runs ``ids`` paged (everyone's, or ``person``'s): each person's steps (run id, step
    id), each with the ladder level that first paged them (``"2"``; None when its record does not name whom it
    paged: written before 2026-12-06, or a help or a hold past its maximum, which no level paged). Two queries,
    however many people: a page sent (``deliveries``) says who was paged, the ``escalation`` record (its ``paged``)
    by which level."""
    if not ids:
        return {}
    sent = (sa.select(deliveries.c.recipient, deliveries.c.run_id, deliveries.c.step_id).distinct()
            .where(deliveries.c.kind.in_(ESCALATION_KINDS), deliveries.c.run_id.in_(ids),
                   deliveries.c.step_id.is_not(None)))
    if person is not None:
        sent = sent.where(deliveries.c.recipient == person)
    said = (sa.select(records.c.run_id, records.c.step_id, records.c.data)
            .where(records.c.kind == RecordKind.ESCALATION, records.c.run_id.in_(ids)).order_by(records.c.seq))
    with engine.ledger.read() as conn:
        out: dict[str, dict[tuple[str, str], str | None]] = {}
        for r in conn.execute(sent):
            out.setdefault(r.recipient, {})[(r.run_id, r.step_id)] = None
        if out:
            for r in conn.execute(said):
                data = json.loads(r.data or "{}")
                if ("escalated" if data.get("asked_by") else data.get("message")) not in ESCALATION_KINDS:
                    continue  # a reminder to its own people: not what brought it to anyone else
                for who in data.get("paged") or ():
                    steps = out.get(who)
                    if steps is not None and steps.get((r.run_id, r.step_id), "") is None and data.get("level"):
                        steps[(r.run_id, r.step_id)] = str(data["level"])  # the first level that paged them
    return out


@dataclass(frozen=True)
class Waiting:
    """A step of an open run that waits on a person, as ``sop status --for`` shows it."""

    run: BoardRun
    step: BoardStep
    theirs: Theirs
    time_left: str | None  # "18m left" / "3m overdue" in SOP time; None: no due, or on hold (its clock stopped)
    left_s: float | None

    @property
    def overdue(self) -> bool:
        return self.left_s is not None and self.left_s < 0

    def urgency(self) -> tuple[Any, ...]:
        """Most urgent first (:func:`~flows.engine.board.by_urgency`)."""
        return by_urgency(self.run.priority, self.left_s, self.run.started_at)

    def facts(self) -> dict[str, Any]:
        """What ``--json`` prints."""
        run, step = self.run, self.step
        return {"run": run.id, "priority": f"P{run.priority}", "class": run.sop_class, "sop": run.sop_id,
                "title": run.title, "subject": run.subject, "step": step.id, "step_title": step.title,
                "why": self.theirs.why, "reason": str(self.theirs), "handed_by": self.theirs.by,
                "stage": self.theirs.stage, "role": step.assignee, "due_at": step.due_at,
                "time_left": self.time_left, "left_s": self.left_s, "overdue": self.overdue,
                "on_hold": step.hold_reason if step.held_at else None}


def _waiting(site: Any, person: str, runs: list[BoardRun], escalated: dict[tuple[str, str], str | None],
             now: datetime) -> list[Waiting]:
    """The active human steps of ``runs`` that count in ``person``'s load, most urgent first (``escalated``: the
    steps whose escalation paged them, each with the level that did, as :func:`escalations`)."""
    out = []
    for run in runs:
        for step in run.steps:
            if step.state != StepState.ACTIVE or step.kind != "human":
                continue
            theirs = why_theirs(site, person, assignee=step.assignee, claimed_by=step.claimed_by,
                                escalated=(run.id, step.id) in escalated, primary=step.person,
                                handed_by=step.handed_by, level=escalated.get((run.id, step.id)))
            if theirs is None or not theirs.load:
                continue
            running = step.due_at is not None and step.held_at is None and run.held_at is None
            left_s = seconds_left(step.due_at, now, run.speed) if running else None
            out.append(Waiting(run, step, theirs, time_left(step.due_at, now, run.speed) if running else None,
                               left_s))
    return sorted(out, key=Waiting.urgency)


def waiting_on(engine: Any, person: str, now: datetime | None = None) -> tuple[list[Waiting], int]:
    """Every step of the open runs that waits on ``person``, most urgent first; and how many runs are open."""
    _, runs = open_board(engine)
    escalated = escalations(engine, [r.id for r in runs], person).get(person, {})
    return _waiting(engine.site, person, runs, escalated, now or datetime.now(UTC)), len(runs)


@dataclass(frozen=True)
class Load:
    """One person's open steps (most urgent first): ``sop status --people``."""

    person: str
    steps: list[Waiting]

    @property
    def overdue(self) -> int:
        return sum(w.overdue for w in self.steps)

    def facts(self) -> dict[str, Any]:
        """What ``--json`` prints: the counts and the most urgent step (None: nothing waits on them)."""
        return {"person": self.person, "steps": len(self.steps), "overdue": self.overdue,
                "most_urgent": self.steps[0].facts() if self.steps else None}


def loads(engine: Any, now: datetime | None = None) -> list[Load]:
    """Each person with an open step waiting on them: the most overdue steps first, then the most urgent step (as
    :meth:`Waiting.urgency`), then the most steps."""
    _, runs = open_board(engine)
    paged = escalations(engine, [r.id for r in runs])
    now = now or datetime.now(UTC)
    people = set(engine.site.people) | {p for r in runs for s in r.steps for p in (s.claimed_by, s.person) if p}
    found = [Load(p, w) for p in people if (w := _waiting(engine.site, p, runs, paged.get(p, {}), now))]
    return sorted(found, key=lambda load: (-load.overdue, load.steps[0].urgency(), -len(load.steps), load.person))
