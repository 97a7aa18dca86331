"""Who is on call for a role at an instant: a fixed primary and backup, a rotation, overrides.

A role of ``config/roles.yaml`` names a fixed ``primary`` and ``backup``, or a ``rotation``
(:mod:`flows.language.rotation`). :func:`on_call` is pure: the instant and the overrides in
force (read from the ledger by the engine) are given, so compressed time and tests steer
it. An override names the person who stands in as primary from one instant to another; the
latest one wins, and it ends by itself. Also here: what ``sop validate`` checks of
rotations (:func:`check_rotations`) and of people away (:func:`away_errors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dateutil import rrule

from flows.language.durations import parse_duration
from flows.language.rotation import FollowTheSun, Rotation, layer_clash

#: the most segments a schedule lists (a guard: a 1h rotation over a year would be 8760)
MAX_SEGMENTS = 500


def parse_instant(text: str, zone: str, *, now: datetime, base: datetime | None = None) -> datetime:
    """``now``, ``+2h`` (after ``base``, or now), or ISO 8601 (``2026-12-24``, ``2026-12-24T18:00``, with an
    offset or in the site's time zone ``zone``), as a UTC instant; ValueError saying what is accepted."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("+"):
        return (base or now) + parse_duration(text[1:])
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"`{text}` is not a time: write now, +2h (from now or --from), 2026-12-24, "
                         f"2026-12-24T18:00 or 2026-12-24T18:00+08:00 (no offset: {zone})") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    try:
        instant = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 in a zone east of UTC, 9999-12-31 west of it
        raise ValueError(f"`{text}` is out of range: give a time between 1970 and 9998") from None
    if not datetime(1970, 1, 1, tzinfo=UTC) <= instant <= datetime(9998, 12, 31, tzinfo=UTC):
        raise ValueError(f"`{text}` is out of range: give a time between 1970 and 9998")
    return instant


# --- overrides and the answer ---------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """A person standing in as a role's primary from ``starts_at`` until ``ends_at`` (recorded in the ledger)."""

    id: int
    role: str
    person: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    by: str | None = None

    def holds(self, role: str, at: datetime) -> bool:
        return self.role == role and self.starts_at <= at < self.ends_at


Source = Literal["fixed", "rotation", "override"]


@dataclass(frozen=True)
class OnCall:
    """Who answers for a role at an instant, and why; ``until``: when the answer may change next."""

    role: str
    primary: str
    backup: str | None
    source: Source
    why: str
    since: datetime | None = None
    until: datetime | None = None
    override: int | None = None

    def facts(self) -> dict[str, Any]:
        """What a record keeps of it (``step_assigned``, ``escalation``, a page's ``notification``)."""
        facts: dict[str, Any] = {"role": self.role, "primary": self.primary, "backup": self.backup,
                                 "source": self.source, "why": self.why}
        if self.override is not None:
            facts["override"] = self.override
        return facts

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> OnCall:
        return cls(role=facts["role"], primary=facts["primary"], backup=facts.get("backup"), source=facts["source"],
                   why=facts.get("why", ""), override=facts.get("override"))


def on_call(name: str, role: Any, at: datetime, overrides: Iterable[Override] = ()) -> OnCall:
    """Who is primary and backup of role ``name`` (a :class:`flows.language.config.Role`) at ``at``.

    An override in force wins (the latest recorded, when several hold); otherwise the
    rotation's shift holding ``at``, or the fixed primary and backup.
    """
    base = _scheduled(name, role, at)
    overrides = [o for o in overrides if o.role == name]
    later = [o.starts_at for o in overrides if o.starts_at > at]
    until = min([base.until, *later], key=lambda t: t or datetime.max.replace(tzinfo=UTC)) if later else base.until
    current = max((o for o in overrides if o.holds(name, at)), key=lambda o: o.id, default=None)
    if current is None:
        ended = [o.ends_at for o in overrides if o.ends_at <= at and (base.since is None or o.ends_at > base.since)]
        since = max(ended) if ended else base.since  # the shift resumed when an override ended
        return OnCall(name, base.primary, base.backup, base.source, base.why, since, until)
    backup = base.backup
    if backup is None or backup == current.person:
        # the stand-in was the backup: the next member who is neither them nor the one they replace
        members = list(role.members)
        start = members.index(current.person) + 1 if current.person in members else 0
        backup = next((m for m in members[start:] + members[:start] if m not in (current.person, base.primary)),
                      None)
    ends = min(current.ends_at, until) if until else current.ends_at
    why = f"override #{current.id} by {current.by or '-'} until {current.ends_at:%Y-%m-%d %H:%M} UTC: {current.reason}"
    return OnCall(name, current.person, backup, "override", why, max(current.starts_at, base.since or current.starts_at),
                  ends, current.id)


def _scheduled(name: str, role: Any, at: datetime) -> OnCall:
    rotation: Rotation | None = role.rotation
    if rotation is None:
        return OnCall(name, role.primary, role.backup, "fixed", "fixed primary and backup in config")
    shift, since, until = rotation.handoffs().shift_at(at)
    members, layer = rotation.members or list(role.members), rotation.backup
    part = ""
    if rotation.follow_the_sun:
        local = at.astimezone(rotation.zone)
        current = next(p for p in rotation.follow_the_sun if p.holds(local.time().replace(tzinfo=None)))
        members, layer = current.members, current.backup or "next"
        part = f", {current.hours} {rotation.zone_name}"
        begins, ends = _part_bounds(current, rotation.zone, at)
        since = max(since, begins) if since else begins
        until = min(until, ends)
    primary = members[shift % len(members)]
    if isinstance(layer, list):
        backup: str | None = layer[shift % len(layer)]
    else:
        backup = members[(shift + 1) % len(members)] if len(members) > 1 else None
    if backup == primary:
        backup = None
    local_since = f"{since.astimezone(rotation.zone):%Y-%m-%d %H:%M}" if since else "before the first handoff"
    why = (f"rotation: shift {shift + 1} ({primary}) from {local_since} until "
           f"{until.astimezone(rotation.zone):%Y-%m-%d %H:%M} {rotation.zone_name}{part}")
    return OnCall(name, primary, backup, "rotation", why, since, until)


def _part_bounds(part: FollowTheSun, zone: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
    """When the part of the day holding ``at`` began and when it ends (the latest start, the next end)."""
    start, end = part.span
    origin = at.astimezone(zone) - timedelta(days=2)
    daily = {"dtstart": origin.replace(second=0, microsecond=0), "bysecond": 0}
    began = rrule.rrule(rrule.DAILY, byhour=start.hour, byminute=start.minute, **daily).before(at.astimezone(zone),
                                                                                                  inc=True)
    ends = rrule.rrule(rrule.DAILY, byhour=end.hour, byminute=end.minute, **daily).after(at.astimezone(zone))
    return began.astimezone(UTC), ends.astimezone(UTC)


def schedule(name: str, role: Any, start: datetime, end: datetime, overrides: Iterable[Override] = ()) -> list[OnCall]:
    """Who is on call from ``start`` to ``end``, one entry per stretch where nobody changes."""
    overrides = list(overrides)
    out: list[OnCall] = []
    at = start
    while at < end and len(out) < MAX_SEGMENTS:
        current = on_call(name, role, at, overrides)
        out.append(current)
        if current.until is None or current.until <= at:
            break
        at = current.until
    return out


# --- validation: every rotation's people, and people away ----------------------------------


def check_rotations(site: Any, where: dict[tuple, Any]) -> list[Any]:
    """Cross-checks of the roles' rotations that need the role (``sop validate``), located in their file.

    Each layer's people are members of the role, and every shift has a primary and a
    different backup (the A/B role rule); that a rotation covers all hours of the day is
    checked by its model (``follow_the_sun``).
    """
    errors = []
    for name, role in site.roles.items():
        rotation: Rotation | None = role.rotation
        if rotation is None:
            continue
        doc = where[("roles", name)]
        base = ("roles", name, "rotation")
        layers: list[tuple[tuple, list[str], str | list[str]]] = []
        if rotation.follow_the_sun:
            for i, part in enumerate(rotation.follow_the_sun):
                layers.append(((*base, "follow_the_sun", i), part.members, part.backup or "next"))
        else:
            layers.append((base, rotation.members or list(role.members), rotation.backup))
        for path, members, backup in layers:
            for key, people in (("members", members), ("backup", backup if isinstance(backup, list) else [])):
                for j, person in enumerate(people):
                    if person not in role.members:
                        errors.append(doc.error((*path, key, j), f"role `{name}`: `{person}` is in the rotation but "
                                                                 f"not one of the members {role.members}"))
            if isinstance(backup, list):
                clash = layer_clash(members, backup)
                if clash:
                    errors.append(doc.error((*path, "backup"), f"role `{name}`: {clash}"))
            elif len(members) < 2:
                errors.append(doc.error((*path, "members"), f"role `{name}`: a rotation of one person has no backup "
                                                            "(the A/B role rule): add a member or a `backup` layer"))
            if len(set(members)) != len(members):
                errors.append(doc.error((*path, "members"), f"role `{name}`: a person is listed twice in the rotation"))
    return errors


@dataclass(frozen=True)
class AwayGap:
    """A person on call (primary or backup) during a stretch they are away, with no override covering it."""

    role: str
    person: str
    layer: Literal["primary", "backup"]
    starts: datetime
    ends: datetime
    reason: str | None
    #: where the away stretch is written: (``people``, person, ``away``, index)
    path: tuple

    def __str__(self) -> str:
        return (f"{self.person} is {self.layer} of `{self.role}` from {self.starts:%Y-%m-%d %H:%M} until "
                f"{self.ends:%Y-%m-%d %H:%M} UTC but away{f' ({self.reason})' if self.reason else ''}: "
                f"`sop oncall override {self.role} PERSON --from {self.starts:%Y-%m-%dT%H:%M}+00:00 --until "
                f"{self.ends:%Y-%m-%dT%H:%M}+00:00 --reason '{self.person} away' --as YOU` covers it exactly"
                if self.layer == "primary" else
                f"{self.person} is backup of `{self.role}` from {self.starts:%Y-%m-%d %H:%M} until "
                f"{self.ends:%Y-%m-%d %H:%M} UTC but away{f' ({self.reason})' if self.reason else ''}: "
                "nobody backs the primary up then")


def away_instants(person: Any, away: Any, site_zone: str = "UTC") -> tuple[datetime, datetime]:
    """An away stretch as instants: a date is midnight in the person's time zone (the site's when config gives them
    none)."""
    zone = ZoneInfo(person.zone_or(site_zone))

    def instant(value: date | datetime) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=zone)
        return datetime.combine(value, time(0, 0), zone)

    return instant(away.starts).astimezone(UTC), instant(away.until).astimezone(UTC)


def away_gaps(site: Any, start: datetime, days: int = 14, overrides: Iterable[Override] = ()) -> list[AwayGap]:
    """Every stretch of the next ``days`` where someone on call for a role is away (``sop validate --oncall``)."""
    end = start + timedelta(days=days)
    overrides = list(overrides)
    stretches = [(pid, i, *away_instants(person, away, site.settings.timezone), away.reason)
                 for pid, person in site.people.items() for i, away in enumerate(person.away)]
    stretches = [s for s in stretches if s[2] < end and s[3] > start]
    gaps: list[AwayGap] = []
    if not stretches:
        return gaps
    for name, role in site.roles.items():
        for current in schedule(name, role, start, end, overrides):
            begins = max(current.since or start, start)
            ends = min(current.until or end, end)
            for pid, index, away_from, away_until, reason in stretches:
                for layer, who in (("primary", current.primary), ("backup", current.backup)):
                    if who == pid and away_from < ends and away_until > begins:
                        gap = AwayGap(name, pid, layer, max(begins, away_from), min(ends, away_until), reason,  # type: ignore[arg-type]
                                      ("people", pid, "away", index))
                        if gap not in gaps:
                            gaps.append(gap)
    return gaps


def away_errors(site: Any, docs: list[Any], start: datetime, days: int = 14,
                overrides: Iterable[Override] = ()) -> list[Any]:
    """:func:`away_gaps` as errors located at each away stretch in its config file (``sop validate --oncall``)."""
    errors = []
    for gap in away_gaps(site, start, days, overrides):
        doc = next((d for d in docs if isinstance(d.data, dict) and gap.person in (d.data.get("people") or {})), None)
        if doc is not None:
            errors.append(doc.error(gap.path, str(gap)))
    return errors
