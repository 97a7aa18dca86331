"""Metric rules, judged on samples: every seed threshold of the library, just under and just over its line.

The rules are the ones in sops/ (not copies), so a change to a seed SOP's trigger shows here.
Days are Asia/Shanghai days (the site's time zone).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flows.language.library import Library
from flows.language.spec import MetricRule
from flows.triggers.rules import Calendar, evaluate, window

TZ = ZoneInfo("Asia/Shanghai")


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=TZ)


def seed_rule(library: Library, sop_id: str, metric: str, nth: int = 0) -> MetricRule:
    found = [t for t in library.sops[sop_id].sop.triggers if isinstance(t, MetricRule) and t.metric == metric]
    return found[nth]


def judge(rule: MetricRule, samples: list[tuple[datetime, float]]):  # noqa: ANN201
    """Evaluate as the intake does: at the newest sample, over the window the rule needs."""
    calendar = Calendar(rule.period, "Asia/Shanghai") if rule.period else None
    newest = max(at for at, _ in samples)
    span = window(rule, calendar, newest)
    points = sorted((at, v) for at, v in samples if span is None or span[0] <= at < span[1])
    return evaluate(rule, points, calendar, newest)


def daily(start: datetime, values: list[float], hour: int = 12) -> list[tuple[datetime, float]]:
    return [(start.replace(hour=hour) + timedelta(days=i), v) for i, v in enumerate(values)]


# --- "> 100 per day": negative mentions, summed over the day, page at the 101st ---------------


def test_more_than_100_negative_mentions_a_day(library: Library) -> None:
    rule = seed_rule(library, "crisis-pr", "negative_mentions")
    day = [(local(2026, 11, 20, 9), 60.0), (local(2026, 11, 20, 15), 40.0)]
    assert not judge(rule, day).fired  # exactly 100: not above
    verdict = judge(rule, [*day, (local(2026, 11, 20, 23, 59), 1.0)])
    assert verdict.fired and verdict.value == 101 and verdict.period_start == local(2026, 11, 20)
    # yesterday's 100 and today's 1 are different days
    assert not judge(rule, [*day, (local(2026, 11, 21, 0, 1), 1.0)]).fired


# --- "−15% day over day": daily UV, judged once the day is complete -------------------------------


def test_daily_uv_down_15_percent_day_over_day(library: Library) -> None:
    rule = seed_rule(library, "traffic-drop", "daily_uv")
    yesterday = [(local(2026, 11, 19, h), 1000.0) for h in range(10)]  # 10,000 UV
    today_so_far = [(local(2026, 11, 20, h), 1000.0) for h in range(5)]  # 5,000 by noon: not a drop yet
    assert judge(rule, [*yesterday, *today_so_far]) is None  # today is not over: nothing to judge
    today = [*today_so_far, (local(2026, 11, 20, 20), 3400.0)]  # 8,400: −16%
    tomorrow = [(local(2026, 11, 21, 0, 5), 10.0)]
    verdict = judge(rule, [*yesterday, *today, *tomorrow])
    assert verdict.fired and verdict.value == -16.0 and verdict.previous == 10000
    assert verdict.period_start == local(2026, 11, 20)
    milder = [*today_so_far, (local(2026, 11, 20, 20), 3600.0)]  # 8,600: −14%
    assert not judge(rule, [*yesterday, *milder, *tomorrow]).fired


# --- "< 5% for 3 consecutive days": add-to-cart rate, daily average ---------------------------------


def test_add_to_cart_below_5_percent_for_3_days(library: Library) -> None:
    rule = seed_rule(library, "cart-ab-test", "add_to_cart_rate")
    start = local(2026, 11, 18)
    assert judge(rule, daily(start, [0.04, 0.045, 0.049])).fired
    assert not judge(rule, daily(start, [0.04, 0.05, 0.049])).fired  # one day at 5%: the streak breaks
    assert judge(rule, daily(start, [0.045, 0.049])) is None  # two days: not yet
    gap = daily(start, [0.04]) + daily(start + timedelta(days=2), [0.04, 0.04])
    assert judge(rule, gap[:2]) is None  # a day without samples breaks the streak
    # a day's average, not its last sample: 0.03 and 0.08 average 0.055
    mixed = daily(start, [0.04, 0.04]) + [(local(2026, 11, 20, 9), 0.03), (local(2026, 11, 20, 18), 0.08)]
    assert not judge(rule, mixed).fired


# --- "ROI < 2 for 7 consecutive days" -------------------------------------------------------------


def test_roi_below_2_for_7_days(library: Library) -> None:
    rule = seed_rule(library, "roi-optimisation", "ad_roi")
    start = local(2026, 11, 10)
    verdict = judge(rule, daily(start, [1.8] * 7))
    assert verdict.fired and verdict.values == (1.8,) * 7
    assert judge(rule, daily(start, [1.8] * 6)) is None
    assert not judge(rule, daily(start, [1.8, 1.8, 1.8, 2.0, 1.8, 1.8, 1.8])).fired


# --- "+30% month over month": complaint rate, monthly average ---------------------------------------


def test_complaint_rate_up_30_percent_month_over_month(library: Library) -> None:
    rule = seed_rule(library, "complaint-review", "complaint_rate")
    october = [(local(2026, 10, d), 0.010) for d in (3, 17, 30)]
    verdict = judge(rule, [*october, (local(2026, 11, 5), 0.013)])
    assert verdict.fired and verdict.value == 30.0  # 0.013 vs 0.010: +30% exactly (no float noise)
    assert verdict.period_start == local(2026, 11, 1)
    assert not judge(rule, [*october, (local(2026, 11, 5), 0.0129)]).fired
    # December compares with November, across the year end January with December
    assert judge(rule, [(local(2026, 12, 10), 0.01), (local(2027, 1, 2), 0.02)]).fired


# --- "> 1.5 s": detail page load time, hourly average -------------------------------------------------


def test_detail_page_slower_than_1_5_seconds(library: Library) -> None:
    rule = seed_rule(library, "page-speed", "detail_page_load_seconds")
    hour = local(2026, 11, 20, 14)
    assert judge(rule, [(hour, 1.4), (hour + timedelta(minutes=30), 1.7)]).fired  # avg 1.55
    assert not judge(rule, [(hour, 1.5)]).fired
    # the previous hour's slowness does not count in this hour
    assert not judge(rule, [(hour - timedelta(minutes=1), 9.0), (hour + timedelta(minutes=1), 1.2)]).fired


# --- "< 15%": DAU/MAU stickiness, the day's last reading ------------------------------------------------


def test_dau_mau_below_15_percent(library: Library) -> None:
    rule = seed_rule(library, "stickiness", "dau_mau_ratio")
    assert judge(rule, [(local(2026, 11, 20, 9), 0.16), (local(2026, 11, 20, 21), 0.14)]).fired  # last counts
    assert not judge(rule, [(local(2026, 11, 20, 9), 0.14), (local(2026, 11, 20, 21), 0.15)]).fired


# --- calendars -------------------------------------------------------------------------------------------


def test_days_weeks_and_months_follow_the_site_time_zone() -> None:
    day = Calendar("day", "Asia/Shanghai")
    late_utc = datetime.fromisoformat("2026-11-20T17:30:00+00:00")  # 01:30 on the 21st in Shanghai
    assert day.start_of(late_utc) == local(2026, 11, 21)
    assert day.shift(local(2026, 11, 21), -1) == local(2026, 11, 20)
    week = Calendar("week", "Asia/Shanghai")
    assert week.start_of(local(2026, 11, 22, 10)) == local(2026, 11, 16)  # Sunday → that week's Monday
    month = Calendar("month", "Asia/Shanghai")
    assert month.shift(local(2026, 12, 1), 1) == local(2027, 1, 1)
    assert month.shift(local(2026, 1, 1), -1) == local(2025, 12, 1)


def test_duration_periods_are_fixed_lengths() -> None:
    quarter = Calendar("15m")
    at = datetime.fromisoformat("2026-11-20T10:37:12+00:00")
    assert quarter.start_of(at) == datetime.fromisoformat("2026-11-20T10:30:00+00:00")
    assert quarter.shift(quarter.start_of(at), 2) == datetime.fromisoformat("2026-11-20T11:00:00+00:00")


def test_a_rule_without_period_judges_samples_one_by_one() -> None:
    rule = MetricRule.model_validate({"metric": "queue_depth", "above": 10, "for": 2})
    t0 = local(2026, 11, 20, 10)
    points = [(t0, 12.0), (t0 + timedelta(seconds=10), 15.0)]
    assert evaluate(rule, points, None, points[-1][0]).fired
    assert not evaluate(rule, [(t0, 9.0), points[1]], None, points[1][0]).fired


@pytest.mark.parametrize("change", ["-15%", "+30%"])
def test_a_change_needs_a_previous_period_that_is_not_zero(change: str) -> None:
    rule = MetricRule.model_validate({"metric": "m", "period": "day", "aggregate": "last", "change": change})
    cal = Calendar("day", "Asia/Shanghai")
    points = [(local(2026, 11, 19, 12), 0.0), (local(2026, 11, 20, 12), 5.0)]
    assert not evaluate(rule, points, cal, points[-1][0]).fired
