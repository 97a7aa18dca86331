"""What a signal says in one line, as the board, the run page and `sop status` show a run's latest repeat."""

from __future__ import annotations

from flows.engine.monitoring import SAID_CHARS, signal_said


def test_an_alert_says_its_summary_and_grafanas_figures() -> None:
    alert = {"kind": "alert", "annotations": {"summary": "negative mentions 3x the weekly baseline",
                                              "description": "ignored: the summary says it"},
             "values": {"B": 312.0, "C": 1}}
    assert signal_said(alert) == "negative mentions 3x the weekly baseline · B=312.0, C=1"
    assert signal_said({"kind": "alert", "annotations": {"description": "5xx\nabove 5%"}}) == "5xx above 5%"
    assert signal_said({"kind": "alert", "annotations": {}}) is None


def test_a_metric_rule_and_an_event_say_their_values_and_a_long_summary_is_cut() -> None:
    metric = {"kind": "metric", "metric": "negative_mentions", "value": 420, "condition": "sum > 100"}
    assert signal_said(metric) == "negative_mentions 420 (sum > 100)"
    assert signal_said({"kind": "event", "values": {"platform": "douyin"}}) == "platform=douyin"
    long = signal_said({"kind": "alert", "annotations": {"summary": "x" * 5000}})
    assert long is not None and len(long) == SAID_CHARS and long.endswith("…")
    assert signal_said({"kind": "manual"}) is None and signal_said(None) is None
