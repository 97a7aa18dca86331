"""Holds on the step page: "Put on hold" (a reason from the step's ``waiting_for``) and "Release hold".

The two forms post to the step page's own address (a session's, or a personal link's) with
``action=hold`` / ``action=release`` and are read by :func:`flows.web.pages.handle_post`, CSRF
checked like the page's other forms. They are offered only to whoever may use them (the step's
holder, its role's lead, the run's owner, the operators: ``Engine.may_hold``), and the engine
checks again. Refused, nothing recorded: no reason chosen or one the step does not declare
(beside the field, 422), a person who may not (403). Accepted, the record says ``via: web``
or ``via: link``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.engine.holds import Hold, HoldNotAllowed, HoldReasonRefused, open_hold
from flows.engine.links import Claim
from flows.language.actors import Actor
from flows.language.durations import format_duration
from flows.language.steps.human import HumanStep, hold_reasons, max_hold
from flows.web.forms import Refused

#: the step page's hold actions (``action=`` of its forms)
HOLD_ACTIONS = ("hold", "release")
#: the hold form's field for the reason (its error is shown beside it under this name)
REASON_FIELD = "hold_reason"


@dataclass(frozen=True)
class StepHold:
    """What the step page says and offers about holds: the reasons, whether the reader may, the hold on now."""

    reasons: list[str]
    may: bool
    current: Hold | None
    max_hold: str


def step_hold(engine: Any, view: Any, step: HumanStep, person: str) -> StepHold:
    """The step's holds as ``person`` reads its page."""
    reasons = hold_reasons(view.sop, step)
    current = open_hold(engine.ledger, view.id, step.id) if view.steps[step.id].get("held_at") else None
    may = bool(reasons) and engine.may_hold(view, step, person)
    return StepHold(reasons, may, current, format_duration(max_hold(view.sop, step)))


def hold_or_release(engine: Any, view: Any, step: HumanStep, actor: Actor, action: str, posted: dict[str, str],
                    note: str, link: Claim | None) -> str:
    """Put the step on hold (``hold``) or release it (``release``) from the page's post; ``held`` or ``released``.

    Refused (:class:`Refused`, nothing recorded): no reason chosen, or one the step does not
    declare, beside the reason's field (422); a person who may not (403). A step not active, or
    not (or already) on hold, is the engine's StepNotActive.
    """
    try:
        if action == "hold":
            reason = (posted.get(REASON_FIELD) or "").strip()
            if not reason:
                reasons = hold_reasons(view.sop, step)
                raise Refused({REASON_FIELD: f"choose what it waits for: {', '.join(reasons) or 'nothing declared'}"})
            engine.hold(view.id, step.id, actor, reason, note, link=link)
            return "held"
        engine.release(view.id, step.id, actor, note, link=link)
        return "released"
    except HoldReasonRefused as exc:
        raise Refused({REASON_FIELD: "; ".join(exc.problems)}) from None
    except HoldNotAllowed as exc:
        raise Refused(problems=exc.problems, status=403) from None
