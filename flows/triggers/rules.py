"""Metric rules: thresholds, N consecutive periods, % change versus the previous period.

Pure functions over samples; the sample store (``flows.triggers.metrics``) feeds them.

- Samples aggregate per period of their timestamp (``sum | avg | last | max | min``).
  ``day``, ``week`` (from Monday) and ``month`` follow the site's time zone calendar;
  ``minute``, ``hour`` and durations (``15m``, ``6h``) are fixed lengths aligned to the Unix
  epoch. Without a ``period`` every sample is its own period.
- A rule is evaluated at the period of the series' newest sample, as it stands: a running
  ``sum`` that passes ``above: 100`` fires at the 101st mention, not at midnight. A
  running sum can only *stop* satisfying ``below`` or a falling ``change`` as the period
  fills, so those rules wait for the period to be complete (a sample of a later period
  has arrived) before judging it.
- ``for: N`` needs the last N periods to all hold, with no period missing between them;
  a ``change`` compares each of them with the period before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flows.language.durations import parse_duration
from flows.language.spec import MetricRule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIXED = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}


class Calendar:
    """Period arithmetic for one ``period`` spec in one time zone (all instants aware, UTC out)."""

    def __init__(self, period: str, tz: str = "UTC"):
        self.period = period
        self.tz = ZoneInfo(tz)
        self.length = FIXED.get(period) or (None if period in ("day", "week", "month") else parse_duration(period))
        if self.length is not None and self.length <= timedelta(0):
            raise ValueError(f"period {period!r} must be longer than zero")

    def start_of(self, at: datetime) -> datetime:
        """The start of the period holding ``at``."""
        if self.length is not None:
            steps = (at - EPOCH) // self.length
            return EPOCH + steps * self.length
        local = at.astimezone(self.tz).date()
        if self.period == "week":
            local -= timedelta(days=local.weekday())
        elif self.period == "month":
            local = local.replace(day=1)
        return self._midnight(local)

    def shift(self, start: datetime, n: int) -> datetime:
        """The start of the period ``n`` periods after (n < 0: before) the one starting at ``start``."""
        if self.length is not None:
            return start + n * self.length
        local = start.astimezone(self.tz).date()
        if self.period == "day":
            return self._midnight(local + timedelta(days=n))
        if self.period == "week":
            return self._midnight(local + timedelta(days=7 * n))
        months = local.year * 12 + (local.month - 1) + n
        return self._midnight(date(months // 12, months % 12 + 1, 1))

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.tz).astimezone(UTC)


@dataclass(frozen=True)
class Verdict:
    """A rule's judgement of one period: whether it fires, and the numbers behind it."""

    fired: bool
    value: float  # the period's aggregate, or its % change for a change rule
    period_start: datetime
    values: tuple[float, ...]  # the aggregates of the periods looked at, oldest first
    previous: float | None = None
    condition: str = ""


def aggregate(kind: str, values: list[float]) -> float:
    """Fold a period's samples (in time order) into one number."""
    if kind == "sum":
        return float(sum(values))
    if kind == "avg":
        return float(sum(values) / len(values))
    if kind == "max":
        return float(max(values))
    if kind == "min":
        return float(min(values))
    return float(values[-1])


def condition_text(rule: MetricRule) -> str:
    """``sum > 100 per day``, ``avg < 0.05 per day for 3``, ``sum change <= -15% per day``."""
    if rule.above is not None:
        text = f"{rule.aggregate} > {rule.above:g}"
    elif rule.below is not None:
        text = f"{rule.aggregate} < {rule.below:g}"
    else:
        op = "<=" if (rule.change_pct or 0) < 0 else ">="
        text = f"{rule.aggregate} change {op} {rule.change}"
    if rule.period:
        text += f" per {rule.period}"
    return text + (f" for {rule.for_}" if rule.for_ > 1 else "")


def waits_for_complete_period(rule: MetricRule) -> bool:
    """A running sum can only fall out of ``below`` / a falling change: judge it once the period is over."""
    return rule.aggregate == "sum" and (rule.below is not None or (rule.change_pct or 0) < 0)


def holds(rule: MetricRule, value: float, previous: float | None = None) -> tuple[bool, float]:
    """Whether one period satisfies the rule; returns (holds, value judged — the % for a change)."""
    if rule.above is not None:
        return value > rule.above, value
    if rule.below is not None:
        return value < rule.below, value
    if previous is None or previous == 0:
        return False, 0.0
    pct = round((value - previous) / abs(previous) * 100.0, 6)  # 0.013 vs 0.010 is +30%, not +29.999…%
    wanted = rule.change_pct or 0.0
    return (pct <= wanted if wanted < 0 else pct >= wanted), round(pct, 2)


def evaluate(
    rule: MetricRule, samples: Iterable[tuple[datetime, float]], calendar: Calendar | None, newest: datetime
) -> Verdict | None:
    """Judge the rule on a series (samples in time order). None: not enough periods to judge, or numbers past
    what a float holds (a sum of two samples of 1e308, a change from 1e-320): never a verdict of infinity.

    ``newest`` is the instant of the series' newest sample; ``calendar`` is None for a rule
    without ``period`` (every sample is its own period).
    """
    points = list(samples)
    need = samples_needed(rule)
    if calendar is None:
        window = [(at, v) for at, v in points if at <= newest][-need:]
        if len(window) < need:
            return None
        starts, aggregates = [at for at, _ in window], [v for _, v in window]
    else:
        target = judged_period(rule, calendar, newest)
        starts = [calendar.shift(target, -k) for k in range(need - 1, -1, -1)]
        buckets: dict[datetime, list[float]] = {s: [] for s in starts}
        for at, value in points:
            start = calendar.start_of(at)
            if start in buckets:
                buckets[start].append(value)
        if any(not buckets[s] for s in starts):
            return None  # a period without samples breaks the streak
        aggregates = [aggregate(rule.aggregate, buckets[s]) for s in starts]
    judged: list[float] = []
    fired = True
    for k in range(need - rule.for_, need):
        ok, value = holds(rule, aggregates[k], aggregates[k - 1] if k > 0 else None)
        fired = fired and ok
        judged.append(value)
    if not all(math.isfinite(v) for v in (*aggregates, *judged)):
        return None
    previous = aggregates[-2] if rule.change is not None else None
    return Verdict(
        fired=fired,
        value=judged[-1],
        period_start=starts[-1],
        values=tuple(aggregates),
        previous=previous,
        condition=condition_text(rule),
    )


def window(rule: MetricRule, calendar: Calendar | None, newest: datetime) -> tuple[datetime, datetime] | None:
    """The instants [from, to) of samples :func:`evaluate` needs (None: the last N samples, by count)."""
    if calendar is None:
        return None
    target = judged_period(rule, calendar, newest)
    return calendar.shift(target, -(samples_needed(rule) - 1)), calendar.shift(target, 1)


def samples_needed(rule: MetricRule) -> int:
    """How many periods (or samples, without a period) a rule looks at: N, plus one for a change."""
    return rule.for_ + (1 if rule.change is not None else 0)


def judged_period(rule: MetricRule, calendar: Calendar, newest: datetime) -> datetime:
    """The start of the period a rule judges: the newest sample's, or the one before when it waits."""
    target = calendar.start_of(newest)
    return calendar.shift(target, -1) if waits_for_complete_period(rule) else target
