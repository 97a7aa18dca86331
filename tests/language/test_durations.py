"""The JSON Schema editors check durations with and the parser `sop validate` uses agree."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator

from flows.language.durations import DURATION_PATTERN, parse_duration

GOOD = ["30s", "15m", "2h", "48h", "1d", "1w", "1h30m", "1w2d3h4m5s", "1.5h", "0.5s", "0h5m", " 2h ", "2h\n",
        "PT2H", "P2D", "P1W", "PT1H30M", "PT0.5H", "pt2h", "Pt1h", "p1w", "P1DT2H", "PT0.5S", "P0DT1S"]
BAD = ["", " ", "2", "2 h", "2H", "5x", "soon", "h", "-5m", "+5m", "1e3s", ".5h", "5.h", "2hh", "1d1d", "30m2h",
       "2h30", "0s", "0h0m", "0.0s", "P", "PT", "P1DT", "P0D", "PT0S", "P1M", "PT2H30", "2h 30m", "٢h", "P2Dx"]


def parses(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("text", GOOD + BAD)
def test_the_schema_pattern_accepts_exactly_what_the_parser_accepts(text: str) -> None:
    assert parses(text) == (text in GOOD)
    assert bool(re.fullmatch(DURATION_PATTERN, text)) == parses(text)
    assert Draft202012Validator({"type": "string", "pattern": DURATION_PATTERN}).is_valid(text) == parses(text)


def test_only_magnitudes_are_beyond_the_pattern() -> None:
    # a regex cannot weigh numbers: these have the form but round to zero or overflow
    for text in ("0.0000001s", "9" * 12 + "w"):
        assert re.fullmatch(DURATION_PATTERN, text)
        with pytest.raises(ValueError, match="duration must be"):
            parse_duration(text)


def test_iso_durations_parse_in_any_case() -> None:
    assert parse_duration("pt0.5h") == parse_duration("PT30M") == timedelta(minutes=30)


def test_an_sop_duration_is_at_most_a_year_and_a_day_but_a_window_back_may_be_longer() -> None:
    from flows.language.durations import MAX_DURATION

    assert parse_duration("366d") == MAX_DURATION
    with pytest.raises(ValueError, match=r"at most 366d \(a year and a day\), got '367d'"):
        parse_duration("367d")
    assert parse_duration("800d", limit=None).days == 800  # `sop audit --since 800d`


@pytest.mark.parametrize(("text", "short"), [("30 mins", "30m"), ("1 hour 30 minutes", "1h30m"), ("2 hrs", "2h"),
                                             ("2h 30m", "2h30m"), ("4 hours", "4h"), ("1 day, 2 hours", "1d2h")])
def test_a_duration_in_words_is_refused_with_how_to_write_it(text: str, short: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert str(refused.value).endswith(f"got {text!r}: write `{short}`")
    assert parse_duration(short)  # and what it says to write is a duration


@pytest.mark.parametrize("text", ["soon", "5x", "half an hour", "30 mins or so", "2"])
def test_no_hint_when_the_words_are_no_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration such as .*, got '[^']*'$"):
        parse_duration(text)
