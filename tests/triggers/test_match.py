"""Label matchers: equality, anchored regex with "~", an absent label reads as empty."""

from __future__ import annotations

from flows.triggers.match import matches


def test_plain_value_must_equal_the_label() -> None:
    assert matches({"alertname": "DetailPageSlow"}, {"alertname": "DetailPageSlow", "page": "/p/1"})
    assert not matches({"alertname": "DetailPageSlow"}, {"alertname": "DetailPageSlowish"})


def test_tilde_is_a_regex_over_the_whole_value() -> None:
    matchers = {"alertname": "~HighErrorRate|ServerOverload", "severity": "~critical|page"}
    assert matches(matchers, {"alertname": "ServerOverload", "severity": "page"})
    assert not matches(matchers, {"alertname": "HighErrorRateX", "severity": "critical"})  # anchored at the end
    assert not matches(matchers, {"alertname": "XHighErrorRate", "severity": "critical"})  # and at the start
    assert not matches(matchers, {"alertname": "HighErrorRate", "severity": "warning"})


def test_an_absent_label_reads_as_empty() -> None:
    assert not matches({"platform": "~.+"}, {})
    assert matches({"platform": "~.*"}, {})
    assert matches({"team": ""}, {"alertname": "X"})
    assert not matches({"team": "sre"}, {"alertname": "X"})


def test_non_string_values_compare_as_text() -> None:
    assert matches({"attempt": "3", "final": "true"}, {"attempt": 3, "final": True})
    assert matches({"uplift": "~[0-9.]+"}, {"uplift": 4.2})


def test_no_matchers_match_everything() -> None:
    assert matches({}, {"anything": "at all"})
