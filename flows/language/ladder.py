"""The escalation ladder of a step: its rungs as written (``LadderEntry``) and as concrete levels.

A level says who is told how long after the step became ready: pure arithmetic on the
rungs, shared by ``sop show`` and the timers so both agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from flows.language.durations import parse_duration
from flows.language.fields import Duration, Strict, authored, written

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
#: the most repeats an ``every`` rung's ``max`` may ask for. The engine works out every level of a ladder each time
#: one fires (and :func:`levels` stops at 1,000 anyway), and a person paged 50 times about one step is no longer
#: being escalated to: a ladder that should go on until the step is done leaves ``max`` out.
MAX_REPEATS = 50


class LadderEntry(Strict):
    """One rung: at a % of the step's due budget or a fixed offset from ready, or ``every``."""

    at: str | None = Field(default=None, description="50% of the step's due, or an offset such as 3h")
    every: Duration | None = None
    notify: list[str] = Field(min_length=1)
    max: Annotated[int | None, written("a number of repeats", " (it then repeats until the step is done)")] = Field(
        default=None, ge=1, json_schema_extra={"maximum": MAX_REPEATS},
        description=f"cap on repeats of an `every` entry (at most {MAX_REPEATS})")
    message: Literal["reminder", "escalated", "overdue"] | None = None

    @field_validator("max", mode="before")
    @classmethod
    def _max_is_bounded(cls, value: object, info: ValidationInfo) -> object:
        if not authored(info):  # (`max:` with nothing after it is `written`'s: not an endless rung by accident)
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_REPEATS:
            raise ValueError(f"`max` is at most {MAX_REPEATS} repeats, got {value}; to repeat until the step is done, "
                             "leave `max` out")
        return value

    @field_validator("at", mode="before")
    @classmethod
    def _at_is_percent_or_duration(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError("write a percent such as 50% or a duration such as 3h")
        text = str(value)
        if _PERCENT.match(text):
            return text.strip()
        parse_duration(text)
        return text.strip()

    @model_validator(mode="after")
    def _one_of_at_every(self) -> LadderEntry:
        if (self.at is None) == (self.every is None):
            raise ValueError("a ladder entry needs exactly one of `at` or `every`")
        if self.max is not None and self.every is None:
            raise self.field_error("max", "`max` applies only to an `every` entry")
        return self

    @property
    def percent(self) -> float | None:
        """The entry's percent of the due budget, or None for an offset / `every` entry."""
        match = _PERCENT.match(self.at or "")
        return float(match.group(1)) if match else None

    @property
    def offset(self) -> timedelta | None:
        """The fixed offset from ready for an ``at: 3h`` entry, else None."""
        if self.at is None or self.percent is not None:
            return None
        return parse_duration(self.at)


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


@dataclass(frozen=True)
class Misordered:
    """An ``at`` rung that comes earlier than a level of a rung written above it (indexes into the ladder)."""

    rung: int
    offset: timedelta
    above: int
    above_offset: timedelta


def misordered(ladder: list[LadderEntry], due: timedelta | None) -> Misordered | None:
    """The first ``at`` rung earlier than the level before it, by the arithmetic of :func:`levels`.

    The engine arms each level when the one before it fires (in the order written), so such
    a rung would fire late, right after the level above it. Rungs after an ``every`` without
    ``max`` are never reached and not judged here; a ``%`` rung is skipped when ``due`` is None.
    """
    previous: tuple[timedelta, int] | None = None  # the latest level so far, and its rung
    for number, entry in enumerate(ladder):
        if entry.every is not None:
            if entry.max is None:
                return None
            start = previous[0] if previous is not None else timedelta(0)
            previous = (start + entry.every * entry.max, number)
            continue
        offset = _offset(entry, due)
        if offset is None:
            continue
        if previous is not None and offset < previous[0]:
            return Misordered(number, offset, previous[1], previous[0])
        previous = (offset, number)
    return None


def _offset(entry: LadderEntry, due: timedelta | None) -> timedelta | None:
    """A fixed rung's offset from ready: ``at: 50%`` of ``due`` (None without a due), ``at: 3h`` as it is."""
    if entry.percent is not None:
        return None if due is None else due * (entry.percent / 100)
    return entry.offset or timedelta(0)


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
            offset = _offset(entry, due)
            if offset is None:
                continue
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


def level_words(key: str | None) -> str | None:
    """A fired level's key as people read it (messages, pages, audit lines; JSON and the API keep the key):
    ``"2"`` → ``escalation stage 2``, ``"3.4"`` → ``escalation stage 3, repeat 4``, ``"r2:3.4"`` (a rework's
    second round) → ``escalation stage 3, repeat 4 (round 2)``. Not "step": that is the SOP's step it escalates."""
    if not key:
        return None
    round_, _, level = key.partition(":") if key.startswith("r") and ":" in key else ("", "", key)
    rung, _, repeat = level.partition(".")
    if not rung.isdigit() or (repeat and not repeat.isdigit()):
        return key  # not a ladder level's key (a hold's maximum, a help request): as it is
    words = f"escalation stage {rung}" + (f", repeat {repeat}" if repeat else "")
    return words + (f" (round {round_[1:]})" if round_ else "")
