"""The facts of a run the chain records one at a time: each record on its timeline, each page and whom it
reached, each level of a ladder that fired, and each answer by a person (the first one, a hand-over, an
approval, a call for help, a status update, an earlier round a rejection sent back).

:class:`~flows.audit.builder.RunBuilder` makes them from their records; :class:`~flows.audit.model.StepAudit`
and :class:`~flows.audit.model.RunAudit` hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flows.language.actors import described


@dataclass(slots=True)
class Entry:
    """One ledger record on a run's timeline."""

    seq: int
    at: datetime
    kind: str
    step_id: str | None
    actor: str | None
    data: dict[str, Any]


@dataclass(slots=True)
class Delivery:
    """What happened at one destination of one notification."""

    recipient: str
    destination: str
    ok: bool
    error: str | None = None
    attempts: int | None = None
    latency_ms: int | None = None
    via: str | None = None


@dataclass(slots=True)
class Notification:
    """One page (assigned, reminder, escalated, overdue, run_finished…) and its deliveries."""

    seq: int
    at: datetime
    kind: str
    deliveries: list[Delivery]
    #: the people whose digest kept this page (it reached them later, in a ``digest`` notification)
    kept: list[str] = field(default_factory=list)
    #: the people it was not sent to, each with why (a drill naming its people: "not in the drill")
    not_sent: list[tuple[str, str]] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return sum(1 for d in self.deliveries if d.ok)


@dataclass(slots=True)
class Escalation:
    """One level of a step's ladder that fired (a reminder is a level too)."""

    seq: int
    at: datetime
    level: str
    message: str
    notify: list[str]
    due_at: datetime | None
    late_ms: int | None
    #: the people it reached, as its record names them (since 2026-12); None: a record from before, which named
    #: nobody, so whom it reached is not known (an empty list is known: it reached nobody)
    paged: list[str] | None = None


@dataclass(slots=True)
class Acknowledgement:
    """The first answer by a person on any step of a run, where its time to acknowledge ends: who, on which step,
    how (``done``, ``rejected``, ``approved``, ``took it``) and its record."""

    seq: int
    at: datetime
    step: str | None
    actor: str | None
    how: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def actor_text(self) -> str:
        return described(self.actor, self.facts)


@dataclass(slots=True)
class HandOver:
    """A step given from one person (``holder``: who took it, else the person it went to) to another (``to``)."""

    seq: int
    at: datetime
    actor: str | None  # who handed it over: its holder, a lead above its role, the run's owner or an operator
    holder: str | None
    to: str | None
    note: str | None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def actor_text(self) -> str:
        return described(self.actor, self.facts)


@dataclass(slots=True)
class Approval:
    seq: int
    at: datetime
    actor: str | None
    note: str | None
    facts: dict[str, Any] = field(default_factory=dict)  # how it came: via, by, os_user, token

    @property
    def actor_text(self) -> str:
        return described(self.actor, self.facts)


@dataclass(slots=True)
class Help:
    """"Need help": the holder of a step asked for the next level now."""

    seq: int
    at: datetime
    actor: str | None
    note: str | None
    level: str | None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def actor_text(self) -> str:
        return described(self.actor, self.facts)


@dataclass(slots=True)
class StatusUpdate:
    """A status update posted on a run (or a snooze of the next ask: ``text`` is its reason)."""

    seq: int
    at: datetime
    actor: str | None
    text: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def actor_text(self) -> str:
        return described(self.actor, self.facts)


@dataclass(slots=True)
class Round:
    """An earlier round of a step a rejection sent back: how it ended, by whom, and why it came back."""

    round: int
    state: str
    actor: str | None
    actor_facts: dict[str, Any]
    ready_at: datetime | None
    due_at: datetime | None
    finished_at: datetime | None
    values: dict[str, Any]
    note: str | None
    approvals: list[Approval]
    sent_back_by: str | None
    sent_back_from: str | None
    sent_back_note: str | None

    @property
    def late(self) -> bool | None:
        """Answered after its due (None: it had no due, or was not answered): an ask judged as a step's."""
        return None if self.due_at is None or self.finished_at is None else self.finished_at > self.due_at
