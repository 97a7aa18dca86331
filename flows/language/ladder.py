"""The escalation ladder of a step as concrete levels: who is told, how long after ready.

Pure arithmetic on the SOP model, shared by ``sop show`` and the timers so both agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from flows.language.spec import LadderEntry


@dataclass(frozen=True)
class Level:
    """One firing of the ladder: ``key`` is stable (``"1"``, ``"2.3"``) and fences the timer."""

    key: str
    offset: timedelta
    notify: tuple[str, ...]
    message: str

    @property
    def is_repeat(self) -> bool:
        return "." in self.key


def _message(entry: LadderEntry, offset: timedelta, due: timedelta | None) -> str:
    if entry.message:
        return entry.message
    if due is not None and offset < due:
        return "reminder" if set(entry.notify) <= {"assignee"} else "escalated"
    return "overdue" if set(entry.notify) <= {"assignee"} else "escalated"


def levels(ladder: list[LadderEntry], due: timedelta | None, limit: int = 1000) -> Iterator[Level]:
    """The ladder's levels in order of offset from when the step became ready.

    ``at: 50%`` is 50% of ``due``; ``at: 3h`` is 3h after ready; ``every: 30m`` repeats every
    30m after the previous entry (forever unless ``max``; callers stop iterating when the
    step is done). ``limit`` bounds an endless ladder.
    """
    previous = timedelta(0)
    emitted = 0
    for number, entry in enumerate(ladder, start=1):
        if entry.every is None:
            if entry.percent is not None:
                if due is None:
                    continue
                offset = due * (entry.percent / 100)
            else:
                offset = entry.offset or timedelta(0)
            previous = max(previous, offset)
            emitted += 1
            yield Level(str(number), offset, tuple(entry.notify), _message(entry, offset, due))
        else:
            repeat = 1
            while entry.max is None or repeat <= entry.max:
                if emitted >= limit:
                    return
                offset = previous + entry.every * repeat
                emitted += 1
                yield Level(f"{number}.{repeat}", offset, tuple(entry.notify), _message(entry, offset, due))
                repeat += 1
            previous = previous + entry.every * (entry.max or 0)
