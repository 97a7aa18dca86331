"""Business time: a site's calendars (``config/calendars.yaml``) and the arithmetic of working time.

A calendar is working hours per weekday in a time zone, minus public holidays (the
``holidays`` package: mainland China ``CN``, Spain ``ES``, Germany ``DE``…) and dates closed
by hand, plus make-up working days (China moves weekend days: the package's own, and any
written by hand). An SOP, a step or a class that says ``calendar: cn-office`` counts its
``due``, ``deadline`` and ladder offsets on it; everything else counts wall time.

What a business duration means (one rule, here, for the engine, ``sop show`` and the audit):
**the clock starts at the next working moment, and each 24h is one working day.** In full:

- a start outside working hours counts from the next opening (a start at or after closing,
  or in the lunch break, counts from when work resumes);
- each whole day (24h) of the duration is one **working day**: the same point of the
  working day on the next working day;
- what is left (under a day) counts **working hours**.

On cn-office (09:00–12:00, 13:00–17:00): Friday 17:00 + 48h counts from Monday 09:00 and is
due **Wednesday 09:00** (the issue's "due the Wednesday after"); Friday 16:00 + 1d is Monday
16:00; Friday 16:00 + 2h is Monday 10:00. So ``48h`` = ``2d`` = two working days, and ``5d``
is a working week. Hours are wall-clock hours of the calendar's zone (a day that changes to
summer time is as long as its hours say).

Compressed time: a run at ``--speed N`` lays the calendar over its own SOP clock, which
starts at the run's start and runs N times faster than the real one (:func:`instant_after`);
a business hour then lasts 1/N real hour, and so do the nights and weekends between. This
module is pure (no clock, no engine): the engine passes the instants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, PrivateAttr, WithJsonSchema, field_validator, model_validator

from flows.language.fields import Strict, check_timezone
from flows.language.holiday_codes import SUBDIVISIONS

DAY = timedelta(days=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: a calendar name that means "no calendar": wall time (a step of a business-time SOP may say it)
WALL = "wall"
#: how far ahead a walk looks for working time before it gives up (a calendar closed for good)
_HORIZON_DAYS = 3 * 366
_SPAN = re.compile(r"^\s*([0-2]?\d):([0-5]\d)\s*-\s*([0-2]?\d):([0-5]\d)\s*$")
_HOURS_HINT = "working hours such as 09:00-18:00, or a list such as [09:00-12:00, 13:00-18:00]"

Span = tuple[int, int]  # minutes from midnight: [start, end)


class CalendarClosed(ValueError):
    """A calendar has no working time ahead of an instant (within three years)."""


def parse_hours(value: object) -> tuple[Span, ...]:
    """``09:00-18:00`` or a list of such spans as minutes from midnight, ascending; ValueError otherwise."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"expected {_HOURS_HINT}, got {value!r}")
    spans: list[Span] = []
    for item in items:
        match = _SPAN.match(item) if isinstance(item, str) else None
        if match is None:
            raise ValueError(f"expected {_HOURS_HINT}, got {item!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or h2 > 24 or end > 24 * 60:
            raise ValueError(f"{item!r}: a time of day runs from 00:00 to 24:00")
        if end <= start:
            raise ValueError(f"{item!r}: the end must come after the start (a span cannot cross midnight: "
                             "split it across two days)")
        if spans and start < spans[-1][1]:
            raise ValueError(f"{item!r} overlaps or comes before the span before it: list spans in order, apart")
        spans.append((start, end))
    return tuple(spans)


def _span_text(spans: Iterable[Span]) -> list[str]:
    return [f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in spans]


#: a day's working hours as written (``09:00-18:00`` or a list of spans), validated into spans
Hours = Annotated[tuple[tuple[int, int], ...], BeforeValidator(parse_hours),
                  WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                                  "examples": ["09:00-18:00", ["09:00-12:00", "13:00-18:00"]]})]


class PublicHolidays(Strict):
    """Public holidays from the ``holidays`` package: a country (ISO 3166 code) and maybe a subdivision."""

    country: str = Field(description="ISO 3166-1 code the holidays package knows: CN, ES, DE…")
    subdiv: str | None = Field(default=None, description="a subdivision of the country (ES: MD, DE: BY…)")

    @model_validator(mode="after")
    def _known(self) -> PublicHolidays:
        known = SUBDIVISIONS.get(self.country)
        if known is not None and (self.subdiv is None or self.subdiv in known):
            return self  # without importing the package's 250 countries (holiday_codes)
        import holidays

        supported = holidays.list_supported_countries()  # the installed version may know more
        if self.country not in supported:
            raise self.field_error("country", f"the holidays package knows no country {self.country!r} "
                                              "(an ISO 3166-1 code such as CN, ES, DE, US)")
        codes = supported[self.country]
        if self.subdiv is not None and self.subdiv not in codes:
            names = getattr(getattr(holidays, self.country), "subdivisions_aliases", None) or {}
            meant = next((code for name, code in names.items() if name.casefold() == self.subdiv.casefold()), None)
            hint = (f"; did you mean {meant!r}?" if meant else
                    f" (known: {', '.join(codes[:40])}{'…' if len(codes) > 40 else ''})" if codes else
                    "; the package knows no subdivisions of it: leave `subdiv` out")
            raise self.field_error("subdiv", f"{self.country} has no subdivision {self.subdiv!r}{hint}")
        return self


class Calendar(Strict):
    """Working hours per weekday in a time zone, holidays, and make-up working days (see the module)."""

    timezone: str = Field(description="the IANA zone the hours are in, e.g. Asia/Shanghai")
    hours: dict[Weekday, Hours] = Field(description="weekday → working hours (09:00-18:00 or a list of spans); "
                                                  "a weekday left out is closed")
    holidays: PublicHolidays | None = Field(default=None, description="public holidays from the holidays package")
    closed: list[date] = Field(default_factory=list, description="more days off, by hand (a company day)")
    working_days: list[date] = Field(default_factory=list, description="make-up working days by hand (a Sunday "
                                                                       "China moves into the week)")
    makeup_hours: Hours | None = Field(default=None, description="the hours of a make-up working day (default: Monday's)")

    _cache: dict[date, tuple[Span, ...]] = PrivateAttr(default_factory=dict)
    _by_year: dict[int, tuple[set[date], set[date]]] = PrivateAttr(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("hours")
    @classmethod
    def _some_hours(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("a calendar needs working hours on at least one weekday")
        return value

    @model_validator(mode="after")
    def _makeup_known(self) -> Calendar:
        if self.makeup_hours is None and "mon" not in self.hours:
            if self.working_days:
                raise self.field_error("makeup_hours", "make-up working days need `makeup_hours` when Monday "
                                                       "has no hours to lend them")
        return self

    # --- which hours a date has -------------------------------------------------------------

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _public(self, year: int) -> Any:
        import holidays

        assert self.holidays is not None
        return holidays.country_holidays(self.holidays.country, subdiv=self.holidays.subdiv, years=year)

    def _year(self, year: int) -> tuple[set[date], set[date]]:
        """(days off, make-up working days) of a year: the package's, then the hand-written ones."""
        found = self._by_year.get(year)
        if found is None:
            off: set[date] = {d for d in self.closed if d.year == year}
            work: set[date] = {d for d in self.working_days if d.year == year}
            if self.holidays is not None:
                public = self._public(year)
                off |= {d for d in public if d.year == year}
                work |= {d for d in getattr(public, "weekend_workdays", ()) if d.year == year}
            found = self._by_year[year] = (off - work, work)
        return found

    def spans(self, day: date) -> tuple[Span, ...]:
        """The working spans of a local date (empty: a day off)."""
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        off, work = self._year(day.year)
        if day in work:
            spans = self.makeup_hours or self.hours.get("mon", ())
        elif day in off:
            spans = ()
        else:
            spans = self.hours.get(WEEKDAYS[day.weekday()], ())
        self._cache[day] = spans
        return spans

    def describe(self, day: date) -> str:
        """A date's hours as people read them: ``09:00-18:00`` or ``closed``."""
        return ", ".join(_span_text(self.spans(day))) or "closed"

    # --- arithmetic (naive local times inside, aware UTC outside) ----------------------------

    def _local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _aware(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def _days(self, start: date) -> Iterator[tuple[datetime, tuple[Span, ...]]]:
        for n in range(_HORIZON_DAYS):
            day = start + timedelta(days=n)
            yield datetime.combine(day, time()), self.spans(day)
        raise CalendarClosed(f"no working time within {_HORIZON_DAYS} days of {start}")

    def _walk(self, local: datetime, work: timedelta) -> datetime:
        """The local instant ``work`` of working time after ``local`` (0: the next working instant)."""
        for midnight, spans in self._days(local.date()):
            for s, e in spans:
                begin, end = midnight + timedelta(minutes=s), midnight + timedelta(minutes=e)
                if end <= local:
                    continue
                begin = max(begin, local)
                if work <= end - begin:
                    return begin + work
                work -= end - begin
        raise AssertionError("unreachable")  # _days raises first

    def _position(self, local: datetime) -> timedelta:
        """Working time from the start of ``local``'s day to ``local`` (``local`` in working time)."""
        midnight = datetime.combine(local.date(), time())
        done = timedelta(0)
        for s, e in self.spans(local.date()):
            begin, end = midnight + timedelta(minutes=s), midnight + timedelta(minutes=e)
            done += max(timedelta(0), min(end, local) - begin)
        return done

    def _next_working_day(self, day: date) -> tuple[datetime, tuple[Span, ...]]:
        days = self._days(day + DAY)
        return next((m, spans) for m, spans in days if spans)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant ``duration`` of business time after ``start`` (the module's rule: days, then hours)."""
        days, rest = divmod(duration, DAY)
        local = self._walk(self._local(start), timedelta(0))
        if days:
            position = self._position(local)
            midnight = datetime.combine(local.date(), time())
            for _ in range(days):
                midnight, spans = self._next_working_day(midnight.date())
            length = sum((timedelta(minutes=e - s) for s, e in spans), timedelta(0))
            first = midnight + timedelta(minutes=spans[0][0])
            local = self._walk(first, min(position, length))
        return self._aware(self._walk(local, rest) if rest else local)

    def add_working(self, start: datetime, work: timedelta) -> datetime:
        """The instant ``work`` of working hours after ``start``, counted hour by hour (no day rule)."""
        if work <= timedelta(0):
            return start
        return self._aware(self._walk(self._local(start), work))

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        """How much working time lies between two instants (zero when ``end`` is not after ``start``)."""
        a, b = self._local(start), self._local(end)
        total = timedelta(0)
        if b <= a:
            return total
        day = a.date()
        while day <= b.date():
            midnight = datetime.combine(day, time())
            for s, e in self.spans(day):
                lo, hi = max(a, midnight + timedelta(minutes=s)), min(b, midnight + timedelta(minutes=e))
                if hi > lo:
                    total += hi - lo
            day += DAY
        return total


# --- one home for "which calendar" and "when, on a run's clock" -------------------------------------


def calendar_name(sop: Any, step: Any, site: Any) -> str | None:
    """The calendar a step counts on: its own, else its SOP's, else its class's (settings.class_calendars);
    None (and ``wall``) is wall time."""
    name = getattr(step, "calendar", None) if step is not None else None
    if name is None:
        name = sop.calendar
    if name is None and site is not None:
        name = site.settings.class_calendars.get(sop.class_)
    return None if name in (None, WALL) else name


def calendar_for(sop: Any, step: Any, site: Any) -> Calendar | None:
    """The :class:`Calendar` a step counts on (see :func:`calendar_name`); None: wall time.

    A name the site does not know (a pinned SOP after config changed) counts wall time: ``sop
    validate`` refuses it in the library, so only an old run can meet it.
    """
    name = calendar_name(sop, step, site)
    return site.calendars.get(name) if name is not None and site is not None else None


#: the latest instant a run's clock gives (a timer armed, a due instant): one that falls later is this one, a timer
#: that never fires in practice. A ladder's levels add up (up to 1,000 of them, each up to a year and a day after the
#: one before: ``flows.language.ladder``), and a run slowed 1,000 times (``SPEED_MIN``) would arm its 8th yearly
#: repeat some 8,000 years on, past the last year a datetime holds. The year it leaves keeps what is added to an armed
#: instant (a hold, a hand-over's grace, a zone's offset when shown) inside what a datetime holds.
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _latest(like: datetime) -> datetime:
    """:data:`LATEST`, naive when ``like`` is."""
    return LATEST if like.tzinfo is not None else LATEST.replace(tzinfo=None)


def _after(start: datetime, span: timedelta, speed: float = 1.0) -> datetime:
    """``start + span / speed``, or :data:`LATEST` when that is later (or past any date)."""
    try:
        return min(start + span / speed, _latest(start))
    except OverflowError:
        return _latest(start)


def _on_sop_clock(anchor: datetime, instant: datetime, speed: float) -> datetime:
    """What a run's SOP clock (it reads ``anchor`` at ``anchor`` and runs ``speed`` times faster) reads at the real
    ``instant``; at most :data:`LATEST`, which a run at ×100,000 reaches some 29 days of wall time after its start."""
    try:
        return _after(anchor, (instant - anchor) * speed)
    except OverflowError:  # a span past what a timedelta holds
        return _latest(anchor)


def _back_from_sop_clock(anchor: datetime, sop_instant: datetime, speed: float) -> datetime:
    """The real instant at which a run's SOP clock reads ``sop_instant``: :data:`LATEST` when that is at or past
    the SOP clock's own end (a due, a hold's end: a timer that never fires, as any other past that date)."""
    latest = _latest(anchor)
    return latest if sop_instant >= latest else _after(anchor, sop_instant - anchor, speed)


def instant_after(start: datetime, duration: timedelta, *, calendar: Calendar | None = None, speed: float = 1.0,
                  anchor: datetime | None = None) -> datetime:
    """The real instant ``duration`` of SOP time after ``start`` on a run compressed ``speed`` times (at most
    :data:`LATEST`).

    Wall time: ``start + duration / speed``. Business time: the run's SOP clock (which reads
    ``anchor``, the run's start, at ``anchor`` and runs ``speed`` times faster) carries the
    calendar; the duration is added there and the result brought back to real time.
    """
    if calendar is None:
        return _after(start, duration, speed)
    anchor = start if anchor is None else anchor
    try:
        due = calendar.add(_on_sop_clock(anchor, start, speed), duration)
    except OverflowError:  # working time ahead of the SOP clock's end runs past the last date a datetime holds
        return _latest(anchor)
    return _back_from_sop_clock(anchor, due, speed)


def postponed(instant: datetime, held_from: datetime, held_to: datetime, *, calendar: Calendar | None = None,
              speed: float = 1.0, anchor: datetime | None = None) -> datetime:
    """``instant`` moved later by the time on hold from ``held_from`` to ``held_to`` (real instants; at most
    :data:`LATEST`).

    Wall time: by the real time held. Business time: by the working time held on the run's SOP
    clock (a hold over a weekend moves a due instant by no more than the working hours it
    covered).
    """
    if held_to <= held_from:
        return instant
    if calendar is None:
        return _after(instant, held_to - held_from)
    anchor = held_from if anchor is None else anchor
    since, until, moved = (_on_sop_clock(anchor, t, speed) for t in (held_from, held_to, instant))
    if max(until, moved) >= _latest(anchor):
        return _latest(anchor)  # held up to (or due at) the SOP clock's end: moved later, so there too
    try:
        moved = calendar.add_working(moved, calendar.working_time(since, until))
    except OverflowError:
        return _latest(anchor)
    return _back_from_sop_clock(anchor, moved, speed)


def business_between(start: datetime, end: datetime, *, calendar: Calendar | None = None, speed: float = 1.0,
                     anchor: datetime | None = None) -> timedelta:
    """SOP time between two real instants of a run: wall time × speed, or working time on its calendar."""
    if calendar is None:
        return max(timedelta(0), end - start) * speed
    anchor = start if anchor is None else anchor
    return calendar.working_time(_on_sop_clock(anchor, start, speed), _on_sop_clock(anchor, end, speed))
