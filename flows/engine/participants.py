"""Who takes part in a drill that names them: its pages reach them alone, and every other page is recorded unsent.

A game day pages everyone its SOP's roles and ladders reach, people who are not part of it too (a compliance
officer got three pages of a PR drill). A drill may name who takes part (``sop drill … --people a,b``, ``sop run …
--drill --people a,b``, the board's drill form): the names are kept in its trigger (``people``, recorded with its
start). Who started it takes part whether named or not: they run the game day, and its end is theirs to read.

The pager (``flows.engine.paging``) leaves every other recipient out of a page and records each in the page's
``notification`` record as not sent, and why (``not_sent``), so nothing is dropped silently; the engine's own
count of whom a page reaches (``RunChange.people_paged``: an escalation's record) leaves them out too. Without
names, every person the SOP reaches takes part, as in a real run.
"""

from __future__ import annotations

import re
from typing import Any

from flows.engine.view import RunView
from flows.language.actors import UnknownPerson
from flows.language.config import Site
from flows.ledger.vocabulary import is_drill

#: where a drill's trigger keeps the people it names
PEOPLE = "people"
#: why a page was not sent to someone (the record's ``not_sent`` entries, the audit's lines)
NOT_IN_DRILL = "not in the drill"


def named(text: str | None) -> list[str]:
    """The people a ``--people`` value or the board's field names (commas or spaces between), each once, in order."""
    return list(dict.fromkeys(name for name in re.split(r"[\s,]+", text or "") if name))


def problems(site: Site, names: list[str], *, drill: bool, what: str = "--people") -> list[str]:
    """Why ``names`` cannot be a run's people (empty: they can): only a drill names who takes part, and each name must
    be a person of config/ (with the nearest names when it is not)."""
    if not drill:
        return [f"{what}: only a drill names who takes part, and this run is no drill"]
    if not names:
        return [f"{what} names nobody: give the people taking part (e.g. chen-jie,wang-fang), or leave it out for "
                "every person the SOP reaches"]
    return [f"{what}: {UnknownPerson(name, site, 'person')}" for name in names if name not in site.people]


def trigger_problems(site: Site, trigger: dict[str, Any] | None) -> list[str]:
    """Why a start's trigger cannot name these people (:func:`problems`; a value that is no list of names too)."""
    if trigger is None or PEOPLE not in trigger:
        return []
    names = trigger[PEOPLE]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return [f"people: a list of person ids, got {names!r}"]
    return problems(site, names, drill=is_drill(trigger), what="people")


def taking_part(view: RunView) -> frozenset[str] | None:
    """The people who take part in the run (None: everyone, as in a real run): those its drill names, and who
    started it when a person did."""
    people = view.trigger.get(PEOPLE) if view.is_drill else None
    if not isinstance(people, list):
        return None
    return frozenset([*people, view.run["initiator"] or ""]) - {""}


def left_out(view: RunView, recipients: list[Any]) -> tuple[list[Any], list[dict[str, str]]]:
    """``recipients`` (``notifications.Recipient``) split into those the run's pages may reach and, for the record,
    each one left out (``{"to", "why"}``): a person the drill does not name, or a channel (no person takes part
    there)."""
    people = taking_part(view)
    if people is None:
        return recipients, []
    kept = [r for r in recipients if r.kind == "person" and r.id in people]
    return kept, [{"to": r.id, "why": NOT_IN_DRILL} for r in recipients if r not in kept]


__all__ = ["NOT_IN_DRILL", "PEOPLE", "left_out", "named", "problems", "taking_part", "trigger_problems"]
