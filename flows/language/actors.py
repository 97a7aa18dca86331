"""Who did something, as proven, and how it came: the ``Actor`` of every report, claim and cancel.

A person is a key of ``people:`` in ``config/``; nothing else can act. ``via`` says how the
action came: ``cli`` (``sop done --as``), ``web`` (a signed-in session or the company's
single sign-on), ``link`` (a personal link from a page), ``api`` (a token), ``drill`` (a
drill's simulated responder), ``direct`` (a Python caller, as in tests). An operator acting
for someone else is recorded as both: ``person`` is who the action is for, ``by`` who did it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from flows.language.config import Site

Via = Literal["cli", "web", "link", "api", "drill", "direct"]
VIAS: tuple[str, ...] = ("cli", "web", "link", "api", "drill", "direct")


class UnknownPerson(ValueError):
    """A name that is not a person in ``config/`` (with the nearest names, when there are some)."""

    def __init__(self, name: str, site: Site, what: str = "actor"):
        # the nearest names as validation gives them (Site.near): an id spelled nearly alike, or the person by the
        # name people call them (`--as "Sara Lopez"`, `--as 李伟`)
        hint = site.near(name, ("people",)) or f" (people: {', '.join(sorted(site.people)) or 'none'})"
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
    #: a terminal's proof: ``account`` (its OS account is the person's) or ``declared`` (``--as`` from an account
    #: given to nobody); None elsewhere, and in records written before terminals were bound to accounts
    proof: Literal["account", "declared"] | None = None

    def facts(self) -> dict[str, Any]:
        """What a record keeps beside the person: how it came, by whom, from which OS user or token."""
        facts: dict[str, Any] = {"via": self.via}
        for name in ("by", "os_user", "token", "proof"):
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
    # a terminal's record is proven only by an OS account given to its person: else (`--as`, and every terminal
    # record written before accounts were given) it is what the terminal said
    declared = "self-declared" if via == "cli" and data.get("proof") != "account" else None
    how = ", ".join(part for part in (via, declared, f"os user {os_user}" if os_user else None) if part)
    return f"{who} ({how})" if how else who


class TerminalRefused(ValueError):
    """A terminal that may not act as the person it names (or names nobody): the message, and a hint."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def terminal_actor(site: Site, given: str | None, account: str | None, what: str = "--as") -> Actor:
    """Who acts from a terminal running as OS ``account``, which names ``given`` (``--as``, or $SOP_ACTOR).

    An account given to a person (``os_users`` in config/people.yaml) acts as them, and only as them: ``--as``
    may be left out, and naming anyone else is refused. An account given to nobody may name who acts
    (recorded ``self-declared``) unless ``settings.cli.accounts`` is ``required``. Raises TerminalRefused, or
    UnknownPerson for a name that is nobody in config/.
    """
    owner = site.account_owner(account)
    if owner:
        if given and given != owner:
            raise TerminalRefused(f"this terminal runs as OS account `{account}`, which is {owner}'s "
                                  f"(config/people.yaml): it acts as {owner} only, not as {given} ({what}); nothing "
                                  f"was recorded", f"leave out {what}, or act from {given}'s own account, link or token")
        return Actor(person=owner, via="cli", os_user=account, proof="account")
    accounts = (f"give OS account `{account}` to its person in config/people.yaml (`os_users: [{account}]`)"
                if account else "this process has no OS account name to give to a person")
    if site.settings.cli.accounts == "required":
        raise TerminalRefused(f"OS account `{account or '?'}` is nobody's, and settings.cli.accounts is `required`: "
                              f"this terminal cannot act for anyone; nothing was recorded", accounts)
    if not given:
        raise TerminalRefused(f"who are you? pass {what} <person id> (or set SOP_ACTOR)",
                              f"people in config/: {', '.join(sorted(site.people)) or 'none'}; or {accounts}, "
                              f"and {what} is no longer needed")
    return Actor(person=check_person(site, given, what), via="cli", os_user=account, proof="declared")
