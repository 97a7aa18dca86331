"""Who did something, as proven, and how it came: the ``Actor`` of every report, claim and cancel.

A person is a key of ``people:`` in ``config/``; nothing else can act. ``via`` says how the
action came: ``cli`` (``sop done --as``), ``web`` (a signed-in session or the company's
single sign-on), ``link`` (a personal link from a page), ``api`` (a token), ``drill`` (a
drill's simulated responder), ``direct`` (a Python caller, as in tests). An operator acting
for someone else is recorded as both: ``person`` is who the action is for, ``by`` who did it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

from flows.language.config import Site

Via = Literal["cli", "web", "link", "api", "drill", "direct"]
VIAS: tuple[str, ...] = ("cli", "web", "link", "api", "drill", "direct")


class UnknownPerson(ValueError):
    """A name that is not a person in ``config/`` (with the nearest names, when there are some)."""

    def __init__(self, name: str, site: Site, what: str = "actor"):
        known = sorted(site.people)
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(near)}?" if near else f" (people: {', '.join(known) or 'none'})"
        super().__init__(f"{what} `{name}` is not a person in config/{hint}")
        self.name = name


def check_person(site: Site, name: str | None, what: str = "actor") -> str:
    """``name`` when it is a person of the site; UnknownPerson otherwise."""
    if not name or name not in site.people:
        raise UnknownPerson(name or "", site, what)
    return name


@dataclass(frozen=True)
class Actor:
    """A person, how their action came, and who acted for them (``by``) when someone else did."""

    person: str
    via: Via = "direct"
    by: str | None = None
    os_user: str | None = None
    token: str | None = None

    def facts(self) -> dict[str, Any]:
        """What a record keeps beside the person: how it came, by whom, from which OS user or token."""
        facts: dict[str, Any] = {"via": self.via}
        for name in ("by", "os_user", "token"):
            value = getattr(self, name)
            if value:
                facts[name] = value
        return facts

    def described(self) -> str:
        """``wang-fang (link)``; ``li-wei for wang-fang (api)`` when an operator acted for her;
        ``zhao-lei (cli, os user root)``."""
        return described(self.person, self.facts())


def as_actor(value: Actor | str) -> Actor:
    """An Actor from an Actor or a bare person name (a Python caller: ``via direct``)."""
    return value if isinstance(value, Actor) else Actor(person=value)


def described(person: str | None, data: dict[str, Any]) -> str:
    """How a record's actor reads in the audit, from the record's actor and its facts (:meth:`Actor.facts`):
    ``wang-fang (link)``, ``li-wei for wang-fang (api)``, ``zhao-lei (cli, os user root)``; the bare
    name for records written before actors had facts (or by a machine: ``alertmanager``)."""
    if not person:
        return "-"
    via, by, os_user = data.get("via"), data.get("by"), data.get("os_user")
    who = f"{by} for {person}" if by and by != person else person
    how = ", ".join(part for part in (via, f"os user {os_user}" if os_user else None) if part)
    return f"{who} ({how})" if how else who
