"""Who a hold tells: the people whose open steps it paused, and later that they run again with their new due.

One page per person per hold (a run's hold pausing three of someone's steps is one page listing them), not
to whoever put the hold on or released it (they know). The page's ``level`` carries the hold's facts; the
pager reads the steps' dues when it sends (after the hold moved them). A step that comes to someone while it is
paused (assigned while its run is on hold, handed over on hold) carries the same facts on its ``assigned`` or
``handed_over`` page (:func:`paused`): its reader learns at once that its clock is stopped, by whom and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flows.language.steps.human import HumanStep
from flows.ledger import utc


def tell_holders(change: Any, kind: str, steps: list[HumanStep], *, reason: str, by: str | None, note: str = "",
                 whole_run: bool = False, max_at: datetime | None = None) -> None:
    """Page ``step_held`` or ``step_released`` to each person holding one of ``steps`` (who took it, else the
    person its role meant), once, listing their own; ``by``: who acted (None: its maximum passed)."""
    mine: dict[str, list[str]] = {}
    for step in steps:
        person = change.person_holding(step)
        if person and person != by:
            mine.setdefault(person, []).append(step.id)
    for person, ids in mine.items():
        change.page(kind, None, [person], level=_facts(reason, by, note, whole_run, max_at, ids))


def paused(change: Any, step_id: str) -> dict[str, Any]:
    """The page level (``{"hold": …}``) of a step given to someone while it is on hold, as :func:`tell_holders`
    writes it for that step alone: who put it on hold and why, whether with its run, until when; ``{}`` when the
    step is not on hold."""
    if not change.view.steps[step_id].get("held_at"):
        return {}
    held, run_held = change.store.step_hold(change.id, step_id)
    if held is None:
        return {}
    return _facts(held.reason, held.held_by, held.note or "", run_held is not None, utc(held.max_at), [step_id])


def _facts(reason: str, by: str | None, note: str, whole_run: bool, max_at: datetime | None,
           steps: list[str]) -> dict[str, Any]:
    return {"hold": {"reason": reason, "by": by, "note": note or None, "whole_run": whole_run,
                     "max_at": max_at.isoformat() if max_at else None, "steps": steps}}
