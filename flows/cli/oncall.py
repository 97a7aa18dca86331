"""``sop oncall``: who is primary and backup of each role now and for the next shifts; overrides."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from flows.cli import app
from flows.cli.common import console, fail, print_json
from flows.language.oncall import parse_instant

USAGE = ("sop oncall [ROLE] [--at TIME]  ·  sop oncall override ROLE PERSON --from TIME --until TIME "
         "--reason TEXT [--as YOU]  ·  sop oncall override end ID --reason TEXT [--as YOU]")


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def oncall(
    words: Annotated[list[str] | None, typer.Argument(metavar="[ROLE] | override ROLE PERSON",
                                                      help="a role to show (default: every role), or `override ROLE "
                                                           "PERSON` to put PERSON on call for ROLE for a while")] = None,
    at: Annotated[str | None, typer.Option("--at", help="show who is on call at this time (default: now)")] = None,
    shifts: Annotated[int, typer.Option("--shifts", min=1, max=50, help="how many stretches to show per role")] = 4,
    start: Annotated[str | None, typer.Option("--from", help="override: from when (default: now)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="override: until when (e.g. +3d, 2026-12-28T09:00)")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="override: why (kept in the ledger)")] = None,
    who: Annotated[str | None, typer.Option("--as", help="override: who records it (a person of config/; default: "
                                                                 "the person this OS account is, else $SOP_ACTOR)")] = None,
    tz: Annotated[str | None, typer.Option("--tz", metavar="ZONE", help="times shown and read (--at, --from, --until) in "
                                                                     "this IANA zone (default: yours in config/, "
                                                                     "else the site's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show who is primary and backup of each role now and for the next shifts, or record an override.

    \b
    sop oncall                       every role, now and next
    sop oncall sre-oncall --at 2026-12-24T18:00
    sop oncall finance-lead --tz Europe/London
    sop oncall override sre-oncall tom-becker --from 2026-12-24 --until +3d --reason "zhao-lei on leave" --as li-wei
    sop oncall override end 2 --reason "recorded by mistake" --as li-wei
    """
    from flows.cli.runs import _actor, _engine, _operator

    words = words or []
    engine = _engine(prefect=False)
    site = engine.site
    zone = _zone(site, tz, engine.pager.close)
    now = engine.clock.now()
    try:
        if words[:2] == ["override", "end"] and len(words) == 3 and not words[2].lstrip("#").isdigit():
            fail(f"`override end` takes the number of the override to end (`override end 2`), got `{words[2]}`",
                 USAGE)
        if words[:1] != ["override"]:  # showing: an override's options given here would be dropped without a word
            given = [name for name, value in (("--from", start), ("--until", until), ("--reason", reason),
                                              ("--as", who)) if value is not None]
            if given:
                fail(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for `sop oncall override`; nothing "
                     "was recorded", USAGE)
        if words[:2] == ["override", "end"] and len(words) == 3 and words[2].lstrip("#").isdigit():
            if reason is None:
                engine.pager.close()
                fail("ending an override needs --reason", USAGE)
            _end(engine, int(words[2].lstrip("#")), reason, _operator(engine, _actor(engine, who), "on-call overrides"),
                 zone, as_json)
            return
        if words[:1] == ["override"]:
            if len(words) != 3:
                engine.pager.close()
                fail("override needs a role and a person", USAGE)
            if until is None or reason is None:
                engine.pager.close()
                fail("an override needs --until and --reason", USAGE)
            _override(engine, words[1], words[2], start, until, reason,
                      _operator(engine, _actor(engine, who), "on-call overrides"), zone, now, as_json)
            return
        if len(words) > 1:
            engine.pager.close()
            fail(f"one role at most, got {' '.join(words)}", USAGE)
        _show(engine, words[0] if words else None, at, shifts, zone, now, as_json)
    finally:
        engine.pager.close()


def _override(engine: Any, role: str, person: str, start: str | None, until: str, reason: str, actor: Any, zone: str,
              now: datetime, as_json: bool) -> None:
    from flows.engine.oncall import OverrideRefused, add_override
    from flows.language.actors import UnknownPerson

    try:
        starts_at = parse_instant(start, zone, now=now) if start else now
        ends_at = parse_instant(until, zone, now=now, base=starts_at)
        made = add_override(engine.site, engine.ledger, role, person, starts_at, ends_at, reason, actor)
    except (ValueError, OverrideRefused, UnknownPerson) as exc:
        fail(str(exc), USAGE)
    if as_json:
        print_json({"id": made.id, "role": role, "person": person, "from": made.starts_at.isoformat(),
                    "until": made.ends_at.isoformat(), "reason": reason, "by": actor.person})
        return
    console.print(f"[green]✓[/] override #{made.id}: {person} is primary of {role} from {_when(made.starts_at, zone)} "
                  f"until {_when(made.ends_at, zone)} {zone} ({reason}); recorded as {actor.described()}")


def _end(engine: Any, override_id: int, reason: str, actor: Any, zone: str, as_json: bool) -> None:
    from flows.engine.oncall import OverrideRefused, end_override

    try:
        ended = end_override(engine.ledger, override_id, reason, actor)
    except OverrideRefused as exc:
        fail(str(exc), USAGE)
    if as_json:
        print_json({"id": ended.id, "role": ended.role, "person": ended.person, "until": ended.ends_at.isoformat(),
                    "reason": reason, "by": actor.person})
        return
    how = "withdrawn: it never applies" if ended.ends_at <= ended.starts_at else \
        f"ended {_when(ended.ends_at, zone)} {zone}"
    console.print(f"[green]✓[/] override #{ended.id} ({ended.person} for {ended.role}) {how} ({reason}); "
                  f"recorded as {actor.described()}")


def _show(engine: Any, role: str | None, at: str | None, shifts: int, zone: str, now: datetime, as_json: bool) -> None:
    from flows.engine.oncall import upcoming

    site = engine.site
    if role is not None and role not in site.roles:
        fail(f"`{role}` is not a role in config/", f"roles: {', '.join(sorted(site.roles))}")
    try:
        instant = parse_instant(at, zone, now=now) if at else now
    except ValueError as exc:
        fail(str(exc), USAGE)
    names = [role] if role else sorted(site.roles)
    horizon = instant + timedelta(days=60)
    plans = {name: upcoming(site, engine.ledger, name, instant, horizon)[:shifts] for name in names}
    if as_json:
        print_json({name: [{"primary": s.primary, "backup": s.backup, "source": s.source, "why": s.why,
                            "since": s.since.isoformat() if s.since else None,
                            "until": s.until.isoformat() if s.until else None} for s in plan]
                    for name, plan in plans.items()})
        return
    table = Table(title=f"on call at {_when(instant, zone)} {zone} and next (times in {zone})", title_justify="left")
    for column in ("role", "from", "until", "primary", "backup", "why"):
        table.add_column(column, overflow="fold")
    first = "now" if at is None else _when(instant, zone)  # --at: the instant asked about, not "now"
    for name, plan in plans.items():
        for i, stretch in enumerate(plan):
            table.add_row(name if i == 0 else "", first if i == 0 else _when(stretch.since, zone),
                          _when(stretch.until, zone) if stretch.until else "—", stretch.primary, stretch.backup or "—",
                          _why(stretch))
    console.print(table)


def _zone(site: Any, tz: str | None, closing: Any) -> str:
    """The zone the times are in: ``--tz``, else the zone of the person this terminal is (their OS account in
    config/people.yaml, else $SOP_ACTOR), else the site's: a rotation handing over in London, read from London."""
    from flows.cli.runs import os_user

    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError; a path-like name a ValueError
            closing()
            fail(f"--tz {tz!r} is not a time zone", "an IANA name such as Europe/London or Asia/Shanghai")
        return tz
    person = site.people.get(site.account_owner(os_user()) or os.environ.get("SOP_ACTOR") or "")
    return person.zone_or(site.settings.timezone) if person is not None else site.settings.timezone


def _when(instant: datetime | None, zone: str) -> str:
    if instant is None:
        return "—"
    return f"{instant.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}"


def _why(stretch: Any) -> str:
    """The reason in a few words (the full one is in the records): ``rotation: shift 50 (kenji-sato)``."""
    if stretch.source == "fixed":
        return "fixed in config"
    if stretch.source == "rotation":
        return stretch.why.split(" from ")[0]
    return f"override #{stretch.override}: {stretch.why.split(' UTC: ', 1)[-1]}"
