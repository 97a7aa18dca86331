"""On call, with the ledger: overrides recorded and read, roles resolved to people at an instant,
ladder words (assignee, owner, lead, backup) resolved to names.

The rules are the language layer's (:func:`flows.language.oncall.on_call`, pure); this
module gives them the overrides in force, read from ``oncall_overrides`` on the caller's
connection (a transition's transaction, or a read), and writes new overrides: a row and an
``oncall_override`` record in the chain, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.clock import local_time
from flows.language.actors import Actor, check_person
from flows.language.config import Site
from flows.language.durations import format_duration
from flows.language.oncall import OnCall, Override, on_call, schedule
from flows.language.spec import Sop
from flows.language.steps.base import StepBase
from flows.language.steps.human import HumanStep
from flows.ledger import Ledger, selected, utc
from flows.ledger.schema import oncall_overrides
from flows.ledger.vocabulary import RecordKind

_O = oncall_overrides.c
_KEPT = _O.ends_at > _O.starts_at  # one withdrawn before it began (end_override) never applies
_LIVE = sa.select(oncall_overrides).where(_KEPT & (_O.ends_at > sa.bindparam("_at"))).order_by(_O.id)
_BETWEEN = sa.select(oncall_overrides).where(_KEPT & (_O.ends_at > sa.bindparam("_from"))
                                              & (_O.starts_at < sa.bindparam("_until"))).order_by(_O.id)
_INSERT = oncall_overrides.insert()


class OverrideRefused(ValueError):
    """An override that cannot be recorded: an unknown role or person, or an empty stretch (the message says)."""


def _override(row: Mapping[str, Any]) -> Override:
    return Override(id=row["id"], role=row["role"], person=row["person"], starts_at=utc(row["starts_at"]),  # type: ignore[arg-type]
                    ends_at=utc(row["ends_at"]), reason=row["reason"], by=row["by"])  # type: ignore[arg-type]


def live_overrides(conn: Any, at: datetime) -> list[Override]:
    """Overrides not yet over at ``at`` (in force, or to come). Read by every change that pages or assigns: on
    PostgreSQL straight to the driver (``flows.ledger.selected``), not through SQLAlchemy's execution."""
    return [_override(row) for row in selected(conn, (_LIVE, {"_at": at}))[0]]


def overrides_between(conn: Any, start: datetime, end: datetime) -> list[Override]:
    """Overrides in force at some instant between ``start`` and ``end``."""
    return [_override(row) for row in selected(conn, (_BETWEEN, {"_from": start, "_until": end}))[0]]


def end_override(ledger: Ledger, override_id: int, reason: str, actor: Actor) -> Override:
    """End an override now (one not begun yet is withdrawn: it never applies), with why; the record keeps who and
    until when it was meant to last. Refused (OverrideRefused) for an unknown or finished one, or no reason."""
    if not reason.strip():
        raise OverrideRefused("ending an override needs a --reason (it is kept in the ledger)")
    with ledger.transaction() as tx:
        now = tx.clock.now()
        row = tx.conn.execute(sa.select(oncall_overrides).where(_O.id == override_id)).first()
        if row is None:
            raise OverrideRefused(f"there is no override #{override_id} (`sop oncall` lists the ones in force)")
        found = _override(row._mapping)
        if found.ends_at <= now or found.ends_at <= found.starts_at:
            how = "withdrawn before it began" if found.ends_at <= found.starts_at else \
                f"it ended {found.ends_at:%Y-%m-%d %H:%M} UTC"
            raise OverrideRefused(f"override #{override_id} is over already ({how})")
        ends_at = max(now, found.starts_at)
        tx.append(RecordKind.ONCALL_OVERRIDE_ENDED, None, None, actor=actor.person, override=override_id,
                  role=found.role, person=found.person, was_until=found.ends_at, reason=reason,
                  withdrawn=found.starts_at >= now, **actor.facts())
        tx.conn.execute(oncall_overrides.update().where(_O.id == override_id).values(ends_at=ends_at))
    return Override(found.id, found.role, found.person, found.starts_at, ends_at, found.reason, found.by)


def resolve_targets(targets: list[str], sop: Sop, step: StepBase | None, site: Site, *,
                    on_call: Callable[[str], OnCall], holder: str | None = None) -> list[str]:
    """Ladder words to names the notifications package knows (persons, roles, channels).

    ``assignee`` → the member who claimed the step (``holder``), else the step's assignee;
    ``owner`` → the SOP's owner role; ``lead`` → the assignee role's lead role (the owner
    when there is none); ``backup`` → the assignee role's backup person (its primary when
    there is none) as ``on_call`` says at the instant that matters.
    """
    assignee = step.assignee if isinstance(step, HumanStep) else None
    role = site.roles.get(assignee) if assignee else None
    out: list[str] = []
    for target in targets:
        if target == "assignee":
            names = [holder] if holder and assignee else [assignee] if assignee else [sop.owner]
        elif target == "owner":
            names = [sop.owner]
        elif target == "lead":
            names = [role.lead] if role and role.lead else [sop.owner]
        elif target == "backup":
            if role and assignee:
                answer = on_call(assignee)
                names = [answer.backup or answer.primary]
            else:
                names = [assignee] if assignee else []
        else:
            names = [target]
        out.extend(n for n in names if n and n not in out)
    return out


def answering(targets: list[str], sop: Sop, step: StepBase | None, site: Site, rota: Rota,
              holder: str | None = None) -> dict[str, str]:
    """Each person a page to ``targets`` reaches through a role, with that role, for a page to name them as the
    others ("Sara Lopez (PR on-call)"): who is on call for a role (``lead``, ``owner``, a role named) answers for it;
    the assignee role's backup (``backup``) and the step's holder (``assignee``) for the assignee role. The first
    target that reaches someone names their role; a person named in person answers for none."""
    assignee = step.assignee if isinstance(step, HumanStep) else None
    out: dict[str, str] = {}
    for target in targets:
        for name in resolve_targets([target], sop, step, site, on_call=rota.on_call, holder=holder):
            kind, colon, bare = name.partition(":")
            kind, bare = (kind, bare) if colon else (site.kind_of(name), name)
            if kind == "role":
                out.setdefault(rota.person_for(bare), bare)
            elif kind == "person" and target in ("backup", "assignee") and assignee in site.roles:
                out.setdefault(bare, assignee)  # reached as the assignee role's backup, or its holder
    return out


class Rota:
    """Roles resolved to people at one instant, with the overrides on one connection (read once)."""

    def __init__(self, site: Site, conn: Any, at: datetime):
        self.site, self.conn, self.at = site, conn, at
        self._overrides: list[Override] | None = None
        self._answers: dict[str, OnCall] = {}

    @property
    def overrides(self) -> list[Override]:
        if self._overrides is None:
            self._overrides = live_overrides(self.conn, self.at)
        return self._overrides

    def on_call(self, role: str) -> OnCall:
        """Who answers for ``role`` at this instant (KeyError: not a role)."""
        found = self._answers.get(role)
        if found is None:
            found = self._answers[role] = on_call(role, self.site.roles[role], self.at, self.overrides)
        return found

    def person_for(self, name: str) -> str:
        """The primary of a role, or the person named."""
        return self.on_call(name).primary if name in self.site.roles else name

    def resolved(self) -> dict[str, dict[str, Any]]:
        """Every role resolved so far, as record facts."""
        return {role: answer.facts() for role, answer in self._answers.items()}


def on_call_now(site: Site, ledger: Ledger, role: str, at: datetime | None = None) -> OnCall:
    """Who answers for ``role`` at ``at`` (default: the ledger's clock), in a read of its own."""
    at = at or ledger.clock.now()
    with ledger.read() as conn:
        return Rota(site, conn, at).on_call(role)


def upcoming(site: Site, ledger: Ledger, role: str, start: datetime, end: datetime) -> list[OnCall]:
    """Who is on call for ``role`` from ``start`` to ``end``, stretch by stretch, overrides included."""
    with ledger.read() as conn:
        found = overrides_between(conn, start, end)
    return schedule(role, site.roles[role], start, end, found)


#: the longest stretch an override may cover (a silence may cover 30 days)
MAX_OVERRIDE = timedelta(days=90)


def add_override(site: Site, ledger: Ledger, role: str, person: str, starts_at: datetime, ends_at: datetime,
                 reason: str, actor: Actor) -> Override:
    """Record that ``person`` stands in as ``role``'s primary from ``starts_at`` until ``ends_at``.

    Refused (OverrideRefused) for an unknown role, a person who is not a member of it, an
    empty stretch, one already over, no reason, or a person who is primary of the role for the whole
    stretch already (it would change nobody's pages).
    """
    if role not in site.roles:
        raise OverrideRefused(f"`{role}` is not a role in config/ (roles: {', '.join(sorted(site.roles))})")
    check_person(site, person, "person")
    if person not in site.roles[role].members:
        raise OverrideRefused(f"`{person}` is not a member of `{role}` ({', '.join(site.roles[role].members)}): "
                              "add them to the role's members in config/ first")
    if ends_at <= starts_at:
        zone = site.settings.timezone
        raise OverrideRefused(f"--until ({local_time(ends_at, zone)}) must come after --from "
                              f"({local_time(starts_at, zone)})")
    if not reason.strip():
        raise OverrideRefused("an override needs a --reason (it is kept in the ledger)")
    if ends_at - starts_at > MAX_OVERRIDE:
        raise OverrideRefused(f"an override is for a while (leave, a swap): {MAX_OVERRIDE.days} days at most, this one "
                              f"is {format_duration(ends_at - starts_at)}; a lasting change belongs in the role's "
                              "rotation (config/roles.yaml)")
    with ledger.transaction() as tx:
        now = tx.clock.now()
        if ends_at <= now:
            raise OverrideRefused(f"the stretch ended already ({local_time(ends_at, site.settings.timezone)} is past)")
        replaced = on_call(role, site.roles[role], starts_at, live_overrides(tx.conn, starts_at))
        stretches = schedule(role, site.roles[role], max(starts_at, now), ends_at,
                             overrides_between(tx.conn, max(starts_at, now), ends_at))
        if stretches and all(s.primary == person for s in stretches):
            raise OverrideRefused(f"`{person}` is primary of `{role}` for that whole stretch already "
                                  f"({stretches[0].why}): the override would change nobody's pages")
        seq = tx.append(RecordKind.ONCALL_OVERRIDE, None, None, actor=actor.person, role=role, person=person,
                        starts_at=starts_at, ends_at=ends_at, reason=reason, replaces=replaced.primary,
                        **actor.facts())
        new_id = tx.conn.execute(_INSERT, {"role": role, "person": person, "starts_at": starts_at, "ends_at": ends_at,
                                           "reason": reason, "by": actor.person, "created_at": now,
                                           "record": seq}).inserted_primary_key[0]
    return Override(new_id, role, person, starts_at, ends_at, reason, actor.person)
