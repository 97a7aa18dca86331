"""Who a hold tells: the people whose open steps it paused, and later that they run again with their new due.

One page per person per hold (a run's hold pausing three of someone's steps is one page listing them), not
to whoever put the hold on or released it (they know). The page's ``level`` carries the hold's facts; the
pager reads the steps' dues when it sends (after the hold moved them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flows.language.steps.human import HumanStep


def tell_holders(change: Any, kind: str, steps: list[HumanStep], *, reason: str, by: str | None, note: str = "",
                 whole_run: bool = False, max_at: datetime | None = None) -> None:
    """Page ``step_held`` or ``step_released`` to each person holding one of ``steps`` (who took it, else the
    person its role meant), once, listing their own; ``by``: who acted (None: its maximum passed)."""
    view, mine = change.view, {}
    for step in steps:
        person = view.steps[step.id].get("claimed_by") or change.rota.person_for(step.assignee)
        if person and person != by:
            mine.setdefault(person, []).append(step.id)
    for person, ids in mine.items():
        change.page(kind, None, [person], level={
            "hold": {"reason": reason, "by": by, "note": note or None, "whole_run": whole_run,
                     "max_at": max_at.isoformat() if max_at else None, "steps": ids}})
