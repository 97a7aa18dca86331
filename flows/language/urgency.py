"""Which pages ask nothing of their reader, and the order a backlogged outbox sends pages in.

Here rather than in ``notifications.urgency`` (which reads these): the engine ranks each page as it queues it,
inside its transition, and must not import the notifications package there (it brings Apprise, ~0.85 s the
first time). See docs/notifications.md "Digest" and "Urgent first".
"""

from __future__ import annotations

from flows.language.spec import PRIORITY

#: kinds that ask nothing of their reader and say nothing is late: something was done, finished, taken, handed on,
#: held, withdrawn, cancelled or posted. A person with a ``digest`` gets them bundled, and a backlogged outbox
#: sends them after the pages that ask for work (:func:`queue_rank`). Not here: ``run_started`` (a new incident),
#: ``step_released`` (work is back), ``status_due`` (asks for an update), and every page that asks for work or says
#: something is late or failed.
INFORMATIONAL_KINDS = frozenset({"step_done", "run_finished", "run_cancelled", "status_update", "step_held",
                                 "step_withdrawn", "step_claimed", "handed_away"})


def queue_rank(sop_class: str, kind: str) -> int:
    """Where a page goes in a backlogged outbox, lowest first: its SOP's class (complaint > outage > policy >
    routine, PLAYBOOKS "Priority"), then, within a class, the pages that ask for work or say something is late
    before the informational ones. Pages of one rank go in queue order."""
    return PRIORITY.get(sop_class, len(PRIORITY)) * 2 + (kind in INFORMATIONAL_KINDS)
