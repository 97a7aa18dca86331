"""Which pages ask nothing of their reader, and the order a backlogged outbox sends pages in.

Here rather than in ``notifications.urgency`` (which reads these): the engine ranks each page as it queues it,
inside its transition, and must not import the notifications package there (it brings Apprise, ~0.85 s the
first time). See docs/notifications.md "Digest" and "Urgent first".
"""

from __future__ import annotations

from flows.language.spec import PRIORITY

#: kinds that ask nothing of their reader, say nothing is late and change nothing in what they are doing: something
#: was done, finished, taken by a colleague or posted. A person with a ``digest`` gets them bundled, and a backlogged
#: outbox sends them after the other pages of their class (:func:`queue_rank`); the end of a failed run is neither
#: (:func:`informational`). Not here: :data:`STOPS_WORK`, ``run_started`` (a new incident), ``step_released`` (work
#: is back), ``status_due`` (asks for an update), and every page that asks for work or says something is late.
INFORMATIONAL_KINDS = frozenset({"step_done", "run_finished", "status_update", "step_claimed"})
#: kinds that ask nothing but take work from their reader or stop it (a step withdrawn, handed on, held; a run
#: cancelled): whoever is working on it must hear it at once, so no digest keeps them and a backlog does not put
#: them last
STOPS_WORK = frozenset({"run_cancelled", "step_held", "step_withdrawn", "handed_away"})
#: how a run that went wrong ends (its outcome, or its status): its end is never informational
FAILED_RUN = frozenset({"failed", "rejected", "crashed", "timed_out", "error"})


def informational(kind: str, run_status: str | None = None) -> bool:
    """Whether a ``kind`` page asks nothing of its reader, says nothing went wrong and stops no work of theirs: a
    digest may keep it, and a backlog sends it after the others of its class (``run_status``: the run's outcome
    when it has ended)."""
    return kind in INFORMATIONAL_KINDS and not (kind == "run_finished" and (run_status or "").lower() in FAILED_RUN)


def queue_rank(sop_class: str, kind: str, run_status: str | None = None) -> int:
    """Where a page goes in a backlogged outbox, lowest first: its SOP's class (complaint > outage > policy >
    routine, PLAYBOOKS "Priority"), then, within a class, every other page before the :func:`informational` ones.
    Pages of one rank go in queue order."""
    return PRIORITY.get(sop_class, len(PRIORITY)) * 2 + informational(kind, run_status)
