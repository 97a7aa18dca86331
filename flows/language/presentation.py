"""How a value reads to a person, wherever it is shown: a step's page, a notification, a notify step's message.

People read these on phones at 3 a.m.: a boolean is yes / no (``True`` is Python's word), nothing is —,
a list (a multi-choice answer, an alert's list of hosts) is its items joined, a mapping (an alert's labels)
is ``key: value`` pairs, and one of a field's choices is its label (``product_quality`` reads "Product quality":
:class:`Labelled`). The pages' ``shown`` filter and the message templates' ``finalize`` are both this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NOTHING = "—"
#: why a step or a follow-up was skipped when its ``when`` was false; the condition is shown apart, as code
CONDITION_NOT_MET = "its condition was not met"
#: how records before 2026-12 wrote that reason, the template inside it
_WHEN_FALSE = re.compile(r"when: (?P<when>.*) is false", re.S)


class Labelled:
    """One of a field's choices (``product_quality``), or a person's or role's id (:func:`named`), as it travels to
    where people read it: a ``str`` (``int``, ``float``) equal to the choice itself, so that a ``when``, a comparison, JSON, a command, a URL and a dedup key
    read the id as before; :func:`shown` (and so every page and message) shows its ``label`` ("Product quality"),
    and the SOP's own sentences (:func:`said`) its ``in_text`` ("Crisis PR (high)"). Made by :func:`labelled`."""

    __slots__ = ()
    label: str
    #: how it reads inside a sentence: a label the SOP wrote, as written ("Rumour or fake news", "SKU selector");
    #: the id in words, as the id is written ("high", "every 4 hours"), where the label is only those words capitalised
    in_text: str


class _LabelledStr(Labelled, str):
    pass


class _LabelledInt(Labelled, int):
    pass


class _LabelledFloat(Labelled, float):
    pass


_LABELLED: dict[type, type] = {str: _LabelledStr, int: _LabelledInt, float: _LabelledFloat}


def labelled(value: Any, label: str, in_text: str | None = None) -> Any:
    """``value`` carrying the label a person is shown for it, and how it reads in a sentence (``in_text``, default
    the label) (:class:`Labelled`); a value of another type (a boolean: shown yes / no anyway) is returned as it is."""
    kind = _LABELLED.get(type(value))
    if kind is None:
        return value
    out = kind(value)
    out.label = label
    out.in_text = label if in_text is None else in_text
    return out


def person_name(site: Any, pid: str | None) -> str:
    """A person as people read them: their name in config/people.yaml; a machine's API token (``token:alertmanager``,
    who started a run an alert started) as "the alertmanager token"; else the id as it is (a leaver,
    ``alertmanager``). The one place pages and messages name someone."""
    people = site.people if site is not None else {}
    if pid in people:
        return people[pid].name
    if pid and pid.startswith("token:"):
        return f"the {pid.removeprefix('token:')} token"
    return pid or ""


def role_title(site: Any, rid: str | None) -> str:
    """A role as people read it: its title in config/roles.yaml (``Customer Service Lead``); a step assigned to a
    person reads as their name (:func:`person_name`); a role without a title, its id."""
    roles = site.roles if site is not None else {}
    if rid in roles:
        return roles[rid].title or rid
    return person_name(site, rid)


def person_as(site: Any, pid: str | None, rid: str | None) -> str:
    """A person with the role they answer for, as pages name whom a step is with or whom a page reached: "Chen Jie
    (PR Lead)"; reached in person (``rid`` None), their name alone (:func:`person_name`, :func:`role_title`)."""
    name = person_name(site, pid)
    return f"{name} ({role_title(site, rid)})" if rid else name


#: a config id inside a text, maybe between the backticks a terminal's message puts around it
_AN_ID = re.compile(r"`?(?<![\w-])([a-z0-9][a-z0-9_-]*)(?![\w-])`?")


def names_in(site: Any, text: str | None) -> str:
    """A text written with config's ids (the audit's ``manual by li-wei``, a refusal's `` `li-wei` is not a member
    of `sre-oncall` ``), each person's id as their name and each role's as its title (:func:`role_title`), for a page
    people read; every other word as it is."""
    known = set(site.people) | set(site.roles) if site is not None else set()

    def name(found: re.Match[str]) -> str:
        return role_title(site, found.group(1)) if found.group(1) in known else found.group(0)

    return _AN_ID.sub(name, text) if text else ""


#: a page's kind (notifications.message.Kind) where its words alone would not say it
_PAGE_KINDS = {"automation_failed": "Automated step failed", "status_due": "Status update due",
               "run_overdue_holder": "Run overdue (to the step's holder)"}
#: a channel's kind by the scheme of its (masked) address; another scheme reads as itself
_CHANNELS = {"mailto": "e-mail", "mailtos": "e-mail", "ntfy": "ntfy", "ntfys": "ntfy", "inbox": "inbox",
             "tgram": "Telegram", "slack": "Slack", "discord": "Discord", "msteams": "Teams", "mmost": "Mattermost",
             "mmosts": "Mattermost", "rocket": "Rocket.Chat", "rockets": "Rocket.Chat", "json": "webhook",
             "jsons": "webhook", "form": "webhook", "forms": "webhook", "http": "webhook", "https": "webhook"}


def page_kind(kind: str) -> str:
    """A page's kind as a person reads it in a list of pages sent: ``run_started`` → "Run started"."""
    return _PAGE_KINDS.get(kind) or kind.replace("_", " ").capitalize()


def channel_kind(destination: str) -> str:
    """The kind of channel a page went through, from its masked address (``inbox://tom-becker`` → "inbox",
    ``mailto://…`` → "e-mail"): the address itself is for whoever checks a delivery, not for every reader."""
    scheme, sep, _ = destination.partition("://")
    return _CHANNELS.get(scheme.lower(), scheme) if sep else destination


def named(site: Any, ident: Any) -> Any:
    """A person's or a role's id as it travels to where people read it: equal to the id (a comparison, a command, a
    JSON body read the id), shown as the role's title or the person's name (:class:`Labelled`, as a choice reads
    as its label). An id config does not know is returned as it is."""
    if not isinstance(ident, str):
        return ident
    title = role_title(site, ident)
    return ident if title == ident else labelled(ident, title)


def shown(value: Any) -> str:
    """A value as a person reads it: yes / no, — for nothing (None, empty), lists joined, mappings as pairs, a
    choice as its label."""
    if isinstance(value, Labelled):
        return value.label
    if value is None or value == "":
        return NOTHING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {shown(item)}" for key, item in value.items()) or NOTHING
    if isinstance(value, list | tuple):
        return ", ".join(shown(item) for item in value) or NOTHING
    return str(value)


#: what keeps a chat app from reading a mention: a zero-width space after its ``@`` (or Slack's ``<!``), which
#: nobody sees (discord.py's ``escape_mentions`` does the same)
UNMENTIONED = "\u200b"
#: a mention a chat app would ping, in a value: ``@everyone``, ``@here``, ``@channel``, ``@all`` (Discord, Slack,
#: Mattermost, Rocket.Chat), ``@wang.fang`` (those and Telegram), Discord's ``<@123>``, ``<@!123>``, ``<@&456>``,
#: Slack's ``<@U123>`` and ``<!channel>`` (which Mattermost takes too). Not the ``@`` of an address
#: (``li.wei@example.com``), unless it is a mass mention (``x@everyone``: Discord pings that too)
_MENTION = re.compile(r"(?<![\w.+-])@(?=[\w&!])|@(?=(?:everyone|here|channel|all)(?![\w.-]))|<!(?=\w)")


def unmentioned(text: str) -> str:
    """``text`` with every mention in it (:data:`_MENTION`) made one no chat app pings: it reads the same
    (``@everyone look``), but a zero-width space follows its ``@``. For a value in a message; an SOP's own text
    (a notify step's ``@here``) may mention on purpose and is not passed through this."""
    return _MENTION.sub(lambda found: found.group() + UNMENTIONED, text) if ("@" in text or "<!" in text) else text


def finalized(value: Any) -> Any:
    """Jinja's ``finalize`` for text people read: each ``{{ … }}``'s value as :func:`shown`, except text, which
    stays as it is (``{{ "" if f.required else " (optional)" }}`` means nothing, not —). Only what is printed
    changes: ``{% if approved %}`` still tests the value itself. A choice (:class:`Labelled`) is its label."""
    return value if isinstance(value, str) and not isinstance(value, Labelled) else shown(value)


def said(value: Any) -> str:
    """The ``finalize`` of an SOP's text sent to people (a notify step's message, a step's instructions): each
    value as :func:`finalized`, its mentions made ones nobody is pinged by (:func:`unmentioned`). A choice sits in
    the SOP's sentence: as it reads there (``Crisis PR (high)``, not ``(High)``; a label the SOP wrote as written),
    and it is the SOP's own text: as it is."""
    if isinstance(value, Labelled):
        return value.in_text
    return unmentioned(finalized(value))


#: the longest subject a run shows (a board card, a page's title): enough for a brand, a service, a SKU or a host
SUBJECT_CHARS = 60
#: what ends the short name of an SOP's title ("Crisis PR - negative mentions spike…" → "Crisis PR")
_TITLE_BREAKS = (" - ", " – ", " — ", ": ")


def run_subject(dedup_key: str | None) -> str | None:
    """What a run is about, as people tell two runs of one SOP apart: its dedup key (``storefront``, ``lumi``),
    which the SOP renders from the run's inputs or its alert (``dedup: "{{ inputs.brand }}"``), and which no two
    open runs of one SOP share. None when the SOP has no dedup key (or it rendered empty). A long key keeps its start.
    """
    text = " ".join((dedup_key or "").split())
    if not text:
        return None
    return text if len(text) <= SUBJECT_CHARS else text[:SUBJECT_CHARS - 1].rstrip() + "…"


def short_title(title: str) -> str:
    """An SOP's title up to its first dash or colon: the name people call it by (``Crisis PR``), for the titles of
    pages, where the rest of the line is the step and the run's subject. A title with none stays whole."""
    cut = min((i for i in (title.find(b) for b in _TITLE_BREAKS) if i > 0), default=-1)
    return title[:cut].strip() if cut > 0 else title


def skip_reason(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A skip record's reason in words, and the condition (``when``) that decided it, for a details line of its own
    (the run page, ``sop audit show``, the audit desk): a ``{{ … }}`` template is not a reason a person reads. Older
    records wrote ``when: {{ … }} is false`` as the reason: read the same."""
    reason, when = data.get("reason"), data.get("when")
    old = _WHEN_FALSE.fullmatch(reason) if isinstance(reason, str) else None
    if old is not None:
        return CONDITION_NOT_MET, old["when"]
    return reason, when
