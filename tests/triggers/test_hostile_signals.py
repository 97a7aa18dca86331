"""Signals that would flood the ledger or blind a rule: folded, or refused whole before anything is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.clock import ManualClock
from flows.engine.transitions import Engine
from flows.language.library import Library
from flows.ledger import Ledger
from flows.triggers.intake import Intake
from flows.triggers.metrics import MAX_CLOCK_SKEW, SampleStore
from flows.triggers.model import Alert, Sample, SignalRefused
from tests.triggers.conftest import records_of, runs_of

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def surge(service: str, status: str = "firing") -> Alert:
    return Alert(source="alertmanager", status=status,  # type: ignore[arg-type]
                 labels={"alertname": "HighErrorRate", "severity": "critical", "service": service})


def test_copies_of_one_alert_in_one_payload_are_one_signal_with_a_count(intake: Intake, engine: Engine) -> None:
    payload = [surge("cart")] * 5_000 + [surge("search")] * 3 + [surge("cart")] * 5_000
    outcomes = intake.alerts(payload, "alertmanager")
    assert [(d.status, d.subject == surge(s).fingerprint, d.copies) for d, s in zip(outcomes, ["cart", "search"],
                                                                                      strict=True)] == [
        ("started", True, 10_000), ("started", True, 3)]
    cart = runs_of(engine, "traffic-surge")[0]
    assert cart["repeats"] == 9_999
    assert [r["data"]["copies"] for r in records_of(engine, cart["id"], "trigger_repeated")] == [9_999]
    again = intake.alerts([surge("cart")] * 2, "alertmanager")  # the next payload attaches, counted
    assert (again[0].status, again[0].repeats) == ("attached", 10_001)
    assert [r["data"].get("copies") for r in records_of(engine, cart["id"], "trigger_repeated")] == [9_999, 2]
    resolved = intake.alerts([surge("cart", "resolved")] * 400, "alertmanager")
    assert resolved[0].status == "resolved"
    assert [r["data"]["copies"] for r in records_of(engine, cart["id"], "alert_resolved")] == [400]


@pytest.fixture
def at_now(library: Library, ledger: Ledger) -> Intake:
    ledger.clock = ManualClock(NOW)
    return Intake(Engine(library, ledger, clock=ManualClock(NOW)))


def test_a_sample_dated_beyond_the_clock_skew_refuses_its_batch(at_now: Intake) -> None:
    ok = [Sample("daily_uv", 100.0, NOW + MAX_CLOCK_SKEW, {"site": "main"})]  # at the bound: taken
    at_now.samples(ok, "monitor")
    late = [Sample("daily_uv", 1.0, NOW, {"site": "main"}),
            Sample("daily_uv", 1.0, datetime(2099, 1, 1, tzinfo=UTC), {"site": "main"})]
    with pytest.raises(SignalRefused) as refused:
        at_now.samples(late, "monitor")
    assert refused.value.field == "samples.1.at" and "2099-01-01" in refused.value.message
    store: SampleStore = at_now.store
    assert store.newest("daily_uv", ok[0].series) == NOW + MAX_CLOCK_SKEW  # the batch stored nothing
    with pytest.raises(SignalRefused):
        at_now.samples([Sample("daily_uv", 1.0, NOW + MAX_CLOCK_SKEW + timedelta(seconds=1), {})], "monitor")


def test_a_long_label_makes_a_dedup_key_that_fits_and_still_dedups(intake: Intake, engine: Engine) -> None:
    def spike(brand: str) -> Alert:
        return Alert(source="alertmanager", status="firing", labels={"alertname": "NegativeSentimentSpike",
                                                                     "brand": brand})

    long_brand = "b" * 400
    first, again = intake.alerts([spike(long_brand)], "am")[0], intake.alerts([spike(long_brand)], "am")[0]
    other = intake.alerts([spike(long_brand + "!")], "am")[0]
    assert (first.status, again.status, again.run) == ("started", "attached", first.run)
    assert other.status == "started" and other.run != first.run  # same first 282 characters, another key
    keys = [r["dedup_key"] for r in runs_of(engine, "crisis-pr")]
    assert all(len(key) <= 300 for key in keys) and keys[0].startswith("b" * 282) and keys[0] != keys[1]
