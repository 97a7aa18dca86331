"""How urgent a message is: the Apprise notify type and the ``[P1]``..``[P4]`` title prefix.

The SOP class decides (complaint > outage > policy > routine, DESIGN.md "Priority"). Messages
that ask for work take the class's type; a late step is never below ``warning``; closing
messages (a step done, a run finished) are ``success`` unless the run failed; the others, which
ask nothing (a run started, a step taken, held or withdrawn…), ``info``. The table is
documented in docs/notifications.md.
"""

from __future__ import annotations

from flows.language.spec import PRIORITY
from flows.language.urgency import FAILED_RUN, INFORMATIONAL_KINDS, STOPS_WORK
from notifications.message import NotifyType

#: the notify type of a message that asks for work, by SOP class
BY_CLASS: dict[str, NotifyType] = {
    "complaint": "failure",
    "outage": "warning",
    "policy": "info",
    "routine": "info",
}
_RANK: dict[NotifyType, int] = {"info": 0, "success": 0, "warning": 1, "failure": 2}
_LATE_KINDS = frozenset({"escalated", "overdue", "run_overdue", "run_overdue_holder", "automation_failed", "step_failed",
                         "step_timed_out", "status_missed"})
#: kinds that tell the reader something and ask nothing of them: ``info`` whatever the class. ``run_started`` is one
#: (its first steps' people are told separately; its owner is asked nothing), though a digest never keeps it: a new
#: incident is news at once. ``step_done`` and the end of a run are ``success`` (:func:`notify_type`)
ASKS_NOTHING = INFORMATIONAL_KINDS | STOPS_WORK | {"run_started"}


def notify_type(sop_class: str, kind: str, run_status: str | None = None) -> NotifyType:
    """The Apprise notify type (info, success, warning, failure) of a ``kind`` message in this class."""
    if kind == "step_done":
        return "success"
    if kind == "run_finished" or (kind == "step_failed" and (run_status or "").lower() in FAILED_RUN):
        # a step_failed that says its run has ended failed is that run's end too (one page for both): as urgent
        return "failure" if (run_status or "").lower() in FAILED_RUN else "success"
    if kind in ASKS_NOTHING:
        return "info"
    base = BY_CLASS[sop_class]
    if kind in _LATE_KINDS and _RANK[base] < _RANK["warning"]:
        return "warning"
    return base


def priority(sop_class: str) -> int:
    """1 (complaint) … 4 (routine)."""
    return PRIORITY[sop_class]


def title_prefix(level: int) -> str:
    """``[P1]`` … ``[P4]``: the first thing a reader sees in a list of notifications."""
    return f"[P{level}]"


#: before the ``[P1]`` of every page of a drill: nobody takes a game day's P1 for a real one (nor the other way)
DRILL_MARK = "[DRILL]"
