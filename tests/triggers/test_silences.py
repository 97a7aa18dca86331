"""Silences on the intake: a silenced alert, event or metric firing starts no run and is recorded with who and why;
an expired or ended silence matches nothing; bad matchers are refused where they are wrong. On a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from flows.audit import Audit
from flows.clock import ManualClock
from flows.engine.silences import SilenceBook, SilenceNotFound, SilenceRefused, parse_matchers
from flows.engine.transitions import Engine
from flows.language.actors import Actor
from flows.language.library import Library
from flows.ledger import Ledger
from flows.triggers.intake import Intake
from flows.triggers.model import Alert, Event, Sample
from tests.triggers.conftest import records_of, runs_of

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
LI_WEI = Actor(person="li-wei", via="cli", os_user="ops")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    """A fresh ledger on a clock moved by hand: hours pass in no time."""
    ledger = Ledger(database_url, clock=clock)
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture
def book(ledger: Ledger) -> SilenceBook:
    return SilenceBook(ledger)


def spike(brand: str = "lumi", status: str = "firing") -> Alert:
    return Alert(source="alertmanager", status=status,  # type: ignore[arg-type]
                 labels={"alertname": "NegativeSentimentSpike", "brand": brand, "severity": "page"})


def test_a_silenced_alert_starts_no_run_and_is_recorded_with_who_and_why(
        intake: Intake, engine: Engine, book: SilenceBook) -> None:
    silence = book.create("alertname=NegativeSentimentSpike,brand=lumi", "2h", "planned campaign launch", LI_WEI)
    [held] = intake.alerts([spike("lumi")], "token:alertmanager")
    assert (held.status, held.sop, held.silence, held.run) == ("silenced", "crisis-pr", silence.id, None)
    assert runs_of(engine, "crisis-pr") == []
    [record] = records_of(engine, kind="trigger_silenced")
    assert record["run_id"] is None and record["actor"] == "token:alertmanager"
    data = record["data"]
    assert (data["silence"], data["silenced_by"], data["reason"], data["sop"]) == (
        silence.id, "li-wei", "planned campaign launch", "crisis-pr")
    assert data["signal"]["labels"]["brand"] == "lumi" and data["signal"]["source"] == "alertmanager"
    [made] = records_of(engine, kind="silence_created")
    assert made["actor"] == "li-wei" and made["data"]["via"] == "cli" and made["data"]["os_user"] == "ops"

    [other] = intake.alerts([spike("nova")], "token:alertmanager")  # another brand: not silenced
    assert other.status == "started"


def test_a_silenced_metric_rule_is_recorded_and_fires_once_the_silence_ends(
        intake: Intake, engine: Engine, book: SilenceBook, clock: ManualClock) -> None:
    # inventory-warning: inventory_cover_days below its threshold for a SKU
    silence = book.create("alertname=inventory_cover_days", "1h", "stock count in progress", LI_WEI)
    low = [Sample("inventory_cover_days", 2, T0 + timedelta(minutes=1), {"sku": "A-1", "brand": "lumi"})]  # hour 02:00
    held = intake.samples(low, "token:metrics")  # below 7 and below 3: both of the SOP's rules fire
    assert [(d.status, d.silence, d.trigger) for d in held] == [("silenced", silence.id, 0), ("silenced", silence.id, 1)]
    assert runs_of(engine, "inventory-warning") == []
    records = records_of(engine, kind="trigger_silenced")
    assert [r["data"]["sop"] for r in records] == ["inventory-warning"] * 2
    signal = records[0]["data"]["signal"]
    assert (signal["metric"], signal["labels"]["sku"], signal["value"]) == ("inventory_cover_days", "A-1", 2)

    clock.set(T0 + timedelta(minutes=30))  # the same hour, the silence ended early: the rule fires now
    book.end(silence.id, LI_WEI, "count done")
    again = [Sample("inventory_cover_days", 2, clock.now() - timedelta(minutes=1), {"sku": "A-1", "brand": "lumi"})]
    assert [d.status for d in intake.samples(again, "token:metrics")] == ["started", "attached"]
    assert len(records_of(engine, kind="trigger_silenced")) == 2


def test_an_expired_or_ended_silence_no_longer_matches(
        intake: Intake, engine: Engine, book: SilenceBook, clock: ManualClock) -> None:
    book.create("alertname=NegativeSentimentSpike", "2h", "maintenance", LI_WEI)
    clock.set(T0 + timedelta(hours=1, minutes=59))
    assert intake.alerts([spike("lumi")], "am")[0].status == "silenced"
    clock.set(T0 + timedelta(hours=2))
    assert book.active() == []
    assert intake.alerts([spike("lumi")], "am")[0].status == "started"

    ended = book.create("alertname=HighErrorRate", "1d", "deploy freeze", LI_WEI)
    surge = Alert(source="alertmanager", status="firing",
                  labels={"alertname": "HighErrorRate", "severity": "critical", "service": "cart"})
    assert intake.alerts([surge], "am")[0].status == "silenced"
    book.end(ended.id, Actor("li-wei"), "freeze lifted early")
    assert intake.alerts([surge], "am")[0].status == "started"
    [end] = records_of(engine, kind="silence_ended")
    assert end["actor"] == "li-wei" and end["data"]["reason"] == "freeze lifted early"
    with pytest.raises(SilenceRefused, match="already ended"):
        book.end(ended.id, Actor("li-wei"), "again")
    with pytest.raises(SilenceNotFound):
        book.end("sil-nope", Actor("li-wei"), "x")


def test_an_event_is_silenced_by_its_name_as_alertname(intake: Intake, book: SilenceBook) -> None:
    silence = book.create("alertname=platform.algorithm_changed,platform=douyin", "30m", "known change", LI_WEI)
    held = intake.event(Event("platform.algorithm_changed", values={"platform": "douyin"}), "hook")
    assert [(d.status, d.silence) for d in held] == [("silenced", silence.id)]
    assert intake.event(Event("platform.algorithm_changed", values={"platform": "kuaishou"}), "hook")[0].status == "started"


def test_a_regex_matcher_works_as_in_the_sops_triggers(intake: Intake, book: SilenceBook) -> None:
    book.create('alertname=~"Negative.*",brand=~lumi|nova', "2h", "launch week", LI_WEI)
    assert intake.alerts([spike("nova")], "am")[0].status == "silenced"
    assert intake.alerts([spike("lumix")], "am")[0].status == "started"  # the whole value must match


def test_bad_matchers_are_refused_with_where_and_what_to_write(book: SilenceBook, engine: Engine) -> None:
    with pytest.raises(SilenceRefused) as refused:
        book.create("alertname=X,brand~lumi", "2h", "r", LI_WEI)
    assert refused.value.errors["match"].startswith("at column 13: `brand` has no operator")
    for text, told in (("alertname!=X", "at column 10: `!=` is not supported"),
                       ("alertname=~(", "at column 12: `alertname=~(`: not a regular expression (missing ), "
                                        "unterminated subpattern)"),
                       ('brand=lumi, team=~"ab(c"', "at column 22: `team=~ab(c`: not a regular expression"),
                       ("brand=~(?i)nova", "at column 8: `brand=~(?i)nova`: global flags not at the start of the "
                                           "expression once matched against the whole value; scope flags to a "
                                           "group instead, e.g. (?i:nova)"),
                       ("team=~.*", "would silence every signal"),
                       ("", "at least one matcher")):
        with pytest.raises(SilenceRefused, match=None) as exc:
            parse_matchers(text)
        assert told in exc.value.errors["match"]
    with pytest.raises(SilenceRefused) as many:
        book.create("alertname=X", "90d", " ", LI_WEI)
    assert set(many.value.errors) == {"for", "reason"}
    with pytest.raises(SilenceRefused) as wordy:
        book.create("alertname=X", "2h", "z" * 20_000, LI_WEI)
    assert wordy.value.errors["reason"] == "the reason is at most 4,000 characters (20,000 given)"
    assert records_of(engine) == []


def test_the_audit_counts_silenced_triggers_by_who_and_why(
        intake: Intake, engine: Engine, book: SilenceBook, library: Library) -> None:
    first = book.create("alertname=NegativeSentimentSpike", "2h", "campaign launch", LI_WEI)
    second = book.create("alertname=HighErrorRate", "2h", "load test", Actor("zhao-lei", via="web"))
    intake.alerts([spike("lumi"), spike("nova")], "am")
    intake.alerts([Alert(source="alertmanager", status="firing",
                         labels={"alertname": "HighErrorRate", "severity": "critical", "service": "cart"})], "am")
    rows = {row.silence: row for row in Audit(engine.ledger).silences()}
    assert (rows[first.id].created_by, rows[first.id].reason, rows[first.id].silenced) == (
        "li-wei (cli, self-declared, os user ops)", "campaign launch", 2)
    assert (rows[second.id].created_by, rows[second.id].silenced, rows[second.id].by_sop) == (
        "zhao-lei (web)", 1, {"traffic-surge": 1})
    lines = Audit(engine.ledger).silenced()
    assert [line.silence for line in lines] == [first.id, first.id, second.id]


def test_a_maintenance_window_planned_ahead_holds_only_from_its_start(
        intake: Intake, book: SilenceBook, clock: ManualClock) -> None:
    window = book.create("alertname=NegativeSentimentSpike", "1h", "database upgrade", LI_WEI,
                         starts=(T0 + timedelta(hours=3)).isoformat())
    assert window.state(clock.now()) == "pending" and window.ends_at == T0 + timedelta(hours=4)
    assert intake.alerts([spike("lumi")], "am")[0].status == "started"
    clock.set(T0 + timedelta(hours=3))
    assert intake.alerts([spike("nova")], "am")[0].status == "silenced"
    clock.set(T0 + timedelta(hours=4))
    assert intake.alerts([spike("mira")], "am")[0].status == "started"
    for starts, told in (("yesterday", "expected a time such as"), ("2026-11-19T00:00", "is in the past"),
                         ("2027-06-01T00:00", "at most 30d ahead")):
        with pytest.raises(SilenceRefused) as refused:
            book.create("alertname=X", "1h", "r", LI_WEI, starts=starts)
        assert told in refused.value.errors["from"]


def test_a_silence_made_in_another_process_holds_within_the_intakes_refresh(
        intake: Intake, book: SilenceBook) -> None:
    import time

    from flows.engine import silences as silences_module

    intake.silences.refresh_s = 0.2
    assert intake.alerts([spike("lumi")], "am")[0].status == "started"  # read: no silence
    before = silences_module.written[0]
    book.create("alertname=NegativeSentimentSpike", "1h", "made by `sop silence` elsewhere", LI_WEI)
    silences_module.written[0] = before  # as if another process had made it: this one was not told
    assert intake.alerts([spike("lumi")], "am")[0].status == "attached"  # still the silences read before
    time.sleep(0.25)
    assert intake.alerts([spike("lumi")], "am")[0].status == "silenced"


def test_the_same_silence_sent_twice_at_once_is_made_once(book: SilenceBook, engine: Engine) -> None:
    """A double submit (or a second tab) makes one silence, not two that both need ending."""
    first = book.create("alertname=HighErrorRate,service=web", "2h", "deploy", LI_WEI)
    with pytest.raises(SilenceRefused) as again:
        book.create("alertname=HighErrorRate,service=web", "2h", "deploy", LI_WEI)
    assert f"a moment ago ({first.id})" in again.value.errors["match"]
    other = book.create("alertname=HighErrorRate,service=api", "2h", "deploy", LI_WEI)  # other matchers: made
    assert other.id != first.id
    # the same matchers for another window (Tuesday's and Thursday's maintenance) is another silence
    later = book.create("alertname=HighErrorRate,service=web", "2h", "maintenance", LI_WEI,
                        starts=engine.clock.now() + timedelta(days=2))
    assert later.id not in (first.id, other.id)
    assert len([r for r in records_of(engine) if r["kind"] == "silence_created"]) == 3
