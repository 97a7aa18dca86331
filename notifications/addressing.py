"""Addressing: notify targets (people, roles, channels) to recipients with Apprise URLs.

- a person is one recipient; their ``contacts`` are tried in order until one succeeds;
- a role is its primary person, and its backup too when ``backup=True`` (the A/B rule): who
  they are at an instant is the caller's to say (``on_call``), since a role may rotate;
- a channel is one recipient that gets every URL it lists (a broadcast).

URLs stay templates here (``${VAR}`` unexpanded): secrets are read from the environment
only at the moment of sending. The ladder words ``assignee``, ``owner``, ``lead`` and
``backup`` depend on the run and are resolved by the engine into names before this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from flows.language.config import Site
from flows.language.oncall import OnCall
from notifications.errors import UnknownTarget

TARGET_KINDS = ("person", "role", "channel")


@dataclass(frozen=True)
class Recipient:
    """Someone (or some room) to deliver to.

    ``urls`` are Apprise URL templates. ``fallback`` True: try them in order and stop at the
    first success (a person's contacts); False: deliver to each (a channel). ``via`` says why
    this recipient was chosen (``role pr-oncall (primary)``), for the record.
    """

    id: str
    name: str
    kind: Literal["person", "channel"]
    urls: tuple[str, ...]
    timezone: str = "UTC"
    via: str | None = None
    fallback: bool = True


def recipients(target_names: Iterable[str], site: Site, *, backup: bool = False,
               on_call: Callable[[str], OnCall] | None = None) -> list[Recipient]:
    """The recipients of ``target_names`` (person, role or channel names, or ``role:x`` and the like).

    Roles expand to their primary, and to their backup too when ``backup`` is True, as
    ``on_call`` (role name → :class:`~flows.language.oncall.OnCall`, resolved by the caller at
    the instant that matters) says; without it, only fixed roles can be addressed. A person
    reached twice (named and through a role) is listed once, first reason kept. Raises
    :class:`UnknownTarget` naming the target and what the site knows.
    """
    out: list[Recipient] = []
    seen: set[tuple[str, str]] = set()

    def add(recipient: Recipient) -> None:
        key = (recipient.kind, recipient.id)
        if key not in seen:
            seen.add(key)
            out.append(recipient)

    for target in target_names:
        kind, name = _split(target, site)
        if kind == "person":
            add(person(name, site))
        elif kind == "channel":
            add(channel(name, site))
        else:
            answer = on_call(name) if on_call is not None else _fixed(name, site)
            why = "" if answer.source == "fixed" else f"; {answer.why}"
            add(person(answer.primary, site, via=f"role {name} (primary{why})"))
            if backup and answer.backup:
                add(person(answer.backup, site, via=f"role {name} (backup{why})"))
    return out


def _fixed(name: str, site: Site) -> OnCall:
    role = site.roles[name]
    if role.rotation is not None or role.primary is None:
        raise UnknownTarget(f"role `{name}` rotates: who is on call depends on the instant; resolve it first "
                            "(flows.language.oncall.on_call, or the engine's on_call)")
    return OnCall(name, role.primary, role.backup, "fixed", "fixed primary and backup in config")


def person(person_id: str, site: Site, via: str | None = None) -> Recipient:
    """A person of the site as a recipient (contacts tried in order)."""
    try:
        found = site.people[person_id]
    except KeyError:
        raise UnknownTarget(f"unknown person `{person_id}` (people: {', '.join(site.people) or 'none'})") from None
    return Recipient(
        id=person_id,
        name=found.name,
        kind="person",
        urls=tuple(found.contacts),
        timezone=found.timezone,
        via=via,
        fallback=True,
    )


def channel(channel_id: str, site: Site) -> Recipient:
    """A channel of the site as a recipient (every URL gets the message)."""
    try:
        found = site.channels[channel_id]
    except KeyError:
        raise UnknownTarget(
            f"unknown channel `{channel_id}` (channels: {', '.join(site.channels) or 'none'})"
        ) from None
    return Recipient(
        id=channel_id,
        name=found.title or channel_id,
        kind="channel",
        urls=tuple(found.urls),
        timezone=site.settings.timezone,
        via=None,
        fallback=False,
    )


def _split(target: str, site: Site) -> tuple[str, str]:
    kind, colon, name = target.partition(":")
    if colon:
        if kind not in TARGET_KINDS:
            raise UnknownTarget(f"unknown target kind `{kind}` in `{target}` (expected person:, role: or channel:)")
        table = {"person": site.people, "role": site.roles, "channel": site.channels}[kind]
        if name not in table:
            raise UnknownTarget(f"unknown {kind} `{name}` ({kind}s: {', '.join(table) or 'none'})")
        return kind, name
    found = site.kind_of(target)
    if found is None:
        raise UnknownTarget(
            f"unknown notify target `{target}`: not a person, role or channel of the site config "
            f"(roles: {', '.join(site.roles) or 'none'}; people: {', '.join(site.people) or 'none'}; "
            f"channels: {', '.join(site.channels) or 'none'}). "
            "The ladder words assignee, owner, lead and backup must be resolved to names first."
        )
    return found, target
