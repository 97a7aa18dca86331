"""The intake pipeline on the seed library: route → inputs → dedup → start, and what each outcome leaves in the ledger."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flows.engine.transitions import Engine
from flows.language.library import Library
from flows.ledger import Ledger
from flows.triggers.intake import Intake, render_inputs
from flows.triggers.model import Alert, Event, Sample
from flows.triggers.route import Router
from flows.triggers.rules import waits_for_complete_period
from tests.triggers.conftest import records_of, runs_of

TZ = ZoneInfo("Asia/Shanghai")


def surge(service: str, status: str = "firing", **labels: str) -> Alert:
    return Alert(
        source="alertmanager",
        status=status,  # type: ignore[arg-type]
        labels={"alertname": "HighErrorRate", "severity": "critical", "service": service, **labels},
    )


# --- route --------------------------------------------------------------------------------------


def test_router_finds_the_sops_an_alert_matches(library: Library) -> None:
    router = Router(library)
    assert [m.sop_id for m in router.route_alert(surge("cart"))] == ["traffic-surge"]
    assert router.route_alert(surge("cart", severity="warning")) == []
    spike = Alert(source="grafana", status="firing", labels={"alertname": "NegativeSentimentSpike", "brand": "lumi"})
    assert [m.sop_id for m in router.route_alert(spike)] == ["crisis-pr"]
    assert [
        m.sop_id for m in router.route_event(Event("platform.algorithm_changed", values={"platform": "douyin"}))
    ] == ["creative-refresh"]
    assert router.route_event(Event("platform.algorithm_changed", values={"platform": ""})) == []
    assert {m.sop_id for m in router.rules_for("inventory_cover_days")} == {"inventory-warning"}


def test_inputs_are_rendered_from_the_trigger(library: Library) -> None:
    [match] = Router(library).route_alert(surge("checkout"))
    assert render_inputs(match.trigger, surge("checkout").payload(), {}) == {"service": "checkout"}


# --- alerts: start, attach, resolve -----------------------------------------------------------------


def test_a_firing_alert_starts_a_run_a_repeat_attaches_a_resolution_is_recorded(intake: Intake, engine: Engine) -> None:
    [started] = intake.alerts([surge("checkout")], "token:alertmanager")
    assert (started.status, started.sop) == ("started", "traffic-surge")
    [run] = runs_of(engine, "traffic-surge")
    assert run["id"] == started.run and run["dedup_key"] == "checkout" and run["initiator"] == "token:alertmanager"
    assert run["inputs"]["service"] == "checkout"
    assert run["trigger"]["labels"]["service"] == "checkout" and run["trigger"]["source"] == "alertmanager"

    [again] = intake.alerts([surge("checkout")], "token:alertmanager")
    assert (again.status, again.run, again.repeats) == ("attached", started.run, 1)
    assert len(runs_of(engine, "traffic-surge")) == 1
    assert runs_of(engine)[0]["repeats"] == 1
    assert len(records_of(engine, started.run, "trigger_repeated")) == 1

    [resolved] = intake.alerts([surge("checkout", status="resolved")], "token:alertmanager")
    assert (resolved.status, resolved.run) == ("resolved", started.run)
    [note] = records_of(engine, started.run, "alert_resolved")
    assert note["data"]["labels"]["service"] == "checkout" and note["actor"] == "token:alertmanager"
    assert runs_of(engine)[0]["status"] == "running"  # recorded, not closed: people close runs


def test_a_resolution_without_an_open_run_changes_nothing(intake: Intake, engine: Engine) -> None:
    [outcome] = intake.alerts([surge("nowhere", status="resolved")], "m")
    assert outcome.status == "no_open_run"
    assert records_of(engine) == []


def test_an_unrouted_alert_writes_nothing_and_an_unrenderable_one_only_its_refusal(intake: Intake,
                                                                                     engine: Engine) -> None:
    unknown = Alert(source="alertmanager", status="firing", labels={"alertname": "DiskFull"})
    no_service = Alert(
        source="alertmanager", status="firing", labels={"alertname": "ServerOverload", "severity": "page"}
    )
    outcomes = intake.alerts([unknown, no_service], "m")
    assert [o.status for o in outcomes] == ["unrouted", "refused"]
    assert "input `service`" in outcomes[1].problems[0] and "service" in outcomes[1].problems[0]
    [refused] = records_of(engine)  # heard (flows.triggers.refusal), started nothing
    assert (refused["kind"], refused["run_id"], refused["data"]["sop"]) == ("trigger_refused", None, "traffic-surge")
    assert runs_of(engine) == []


def test_one_alert_matching_two_sops_starts_both(library: Library, engine: Engine) -> None:
    # the seed library has no such overlap; a grafana alert for the page-speed SOP also shows source routing
    slow = Alert(source="grafana", status="firing", labels={"alertname": "DetailPageSlow", "page": "/p/1"})
    [outcome] = Intake(engine).alerts([slow], "m")
    assert (outcome.status, outcome.sop) == ("started", "page-speed")
    assert runs_of(engine)[0]["inputs"]["page"] == "/p/1"


# --- events --------------------------------------------------------------------------------------


def test_an_event_starts_the_sops_that_listen_for_it(intake: Intake, engine: Engine) -> None:
    event = Event(
        "experiment.concluded", key="exp-77", values={"verdict": "winner", "experiment_id": "exp-77", "uplift_pct": 4.2}
    )
    [outcome] = intake.event(event, "m")
    assert (outcome.status, outcome.sop) == ("started", "ab-rollout")
    [run] = runs_of(engine)
    assert run["inputs"]["uplift_pct"] == 4.2 and run["dedup_key"] == "exp-77"
    assert run["trigger"]["event"] == "experiment.concluded" and run["trigger"]["key"] == "exp-77"
    assert intake.event(Event("experiment.concluded", values={"verdict": "loser"}), "m")[0].status == "unrouted"
    assert intake.event(Event("nobody.listens"), "m")[0].status == "unrouted"


def test_an_event_missing_a_required_input_is_refused(intake: Intake, engine: Engine) -> None:
    [outcome] = intake.event(Event("experiment.concluded", values={"verdict": "winner", "experiment_id": "x"}), "m")
    assert outcome.status == "refused" and "uplift_pct" in outcome.problems[0]
    assert runs_of(engine) == []


# --- metrics -------------------------------------------------------------------------------------


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ)


def test_a_metric_rule_fires_once_per_period_and_repeats_attach(intake: Intake, engine: Engine) -> None:
    mention = lambda day, hour, n: Sample("negative_mentions", float(n), at(day, hour))  # noqa: E731
    assert intake.samples([mention(20, 9, 60), mention(20, 12, 40)], "m") == []
    [fired] = intake.samples([mention(20, 13, 1)], "m")
    assert (fired.status, fired.sop) == ("started", "crisis-pr")
    [run] = runs_of(engine, "crisis-pr")
    assert run["inputs"]["mentions_per_day"] == 101
    assert run["trigger"]["kind"] == "metric" and run["trigger"]["condition"] == "sum > 100 per day"
    assert intake.samples([mention(20, 14, 50)], "m") == []  # same day: already fired
    [next_day] = intake.samples([mention(21, 9, 120)], "m")  # the next day, still open: attaches
    assert (next_day.status, next_day.run) == ("attached", fired.run)


def test_label_restricted_rules_only_see_their_series(intake: Intake, engine: Engine) -> None:
    shoes = Sample("detail_page_dwell_seconds", 20.0, at(20, 10), {"category": "shoes"})
    assert intake.samples([shoes], "m") == []
    beauty = Sample("detail_page_dwell_seconds", 20.0, at(20, 10), {"category": "beauty"})
    [outcome] = intake.samples([beauty], "m")
    assert outcome.sop == "dwell-time" and runs_of(engine)[0]["inputs"]["dwell_seconds"] == 20


def test_each_series_is_judged_on_its_own(intake: Intake, engine: Engine) -> None:
    samples = [
        Sample("inventory_cover_days", 5.0, at(20, 10), {"sku": "A-1"}),
        Sample("inventory_cover_days", 9.0, at(20, 10), {"sku": "B-2"}),
        Sample("inventory_cover_days", 2.0, at(20, 10), {"sku": "C-3"}),
    ]
    outcomes = intake.samples(samples, "m")
    by_sku = {runs_of(engine)[i]["inputs"]["sku"] for i in range(len(runs_of(engine)))}
    assert by_sku == {"A-1", "C-3"}
    # C-3 is below both levels (7 and 3): level 1 starts the run, level 2 attaches to it (same sku)
    assert sorted(o.status for o in outcomes) == ["attached", "started", "started"]


def test_every_seed_metric_trigger_starts_its_sop(library: Library, engine: Engine) -> None:
    """Samples that cross each seed rule's line start that SOP with inputs that fit (no refusal)."""
    intake = Intake(engine)
    for sop_id, loaded in sorted(library.sops.items()):
        for i, rule in enumerate(t for t in loaded.sop.triggers if hasattr(t, "metric")):
            if rule.change is not None:  # a steady line, then a jump past the wanted %
                values = [100.0] * rule.for_ + [100.0 * (1 + 2 * (rule.change_pct or 0) / 100)]
            else:
                values = [(rule.above + 1) if rule.above is not None else rule.below / 2] * rule.for_
            if waits_for_complete_period(rule):
                values.append(1.0)  # a sample of the next period closes the one to judge
            labels = dict(rule.labels) or {"sku": "S-1"}
            period = {"month": timedelta(days=31), "week": timedelta(days=7), "1h": timedelta(hours=1)}.get(
                rule.period, timedelta(days=1)
            )
            base = datetime(2026, 1, 15, 12, tzinfo=TZ)
            samples = [Sample(rule.metric, v, base + k * period, labels) for k, v in enumerate(values)]
            outcomes = intake.samples(samples, "m")
            assert outcomes, f"{sop_id} trigger {i} ({rule.metric}) did not fire"
            assert all(o.status in ("started", "attached") for o in outcomes), (sop_id, outcomes)


# --- the database decides -------------------------------------------------------------------------


def test_two_engines_on_one_database_start_one_run(library: Library, ledger: Ledger) -> None:
    """Two processes' worth of engines (separate Ledger objects, one SQLite file) racing the same alert."""
    second = Ledger(ledger.url)
    intakes = [Intake(Engine(library, ledger)), Intake(Engine(library, second))]
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def post(k: int) -> None:
        barrier.wait()
        outcomes.extend(o.status for o in intakes[k % 2].alerts([surge("race")], f"api-{k % 2}"))

    threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.dispose()
    assert sorted(outcomes) == ["attached"] * 7 + ["started"]
    [run] = runs_of(intakes[0].engine, "traffic-surge")
    assert run["repeats"] == 7


def test_two_engines_judging_the_same_samples_fire_once(library: Library, ledger: Ledger) -> None:
    second = Ledger(ledger.url)
    one, two = Intake(Engine(library, ledger)), Intake(Engine(library, second))
    one.store.add([Sample("ad_roi", 1.5, at(d, 12), {"channel": "x"}) for d in range(1, 8)])
    [rule] = one.router.rules_for("ad_roi")
    series = Sample("ad_roi", 0, at(1, 1), {"channel": "x"}).series
    barrier = threading.Barrier(2)
    results = []

    def judge(intake: Intake) -> None:  # both judge the series after its last sample arrived
        barrier.wait()
        results.append(intake.judge(rule, "ad_roi", series, {"channel": "x"}, "m"))

    threads = [threading.Thread(target=judge, args=(i,)) for i in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.dispose()
    assert sorted(str(r.status) if r else "-" for r in results) == ["-", "started"]
    assert len(runs_of(one.engine, "roi-optimisation")) == 1


# --- the figure an alert carries ------------------------------------------------------------------


def _spike(**annotations: str) -> Alert:
    return Alert(source="alertmanager", status="firing", labels={"alertname": "NegativeSentimentSpike", "brand": "lumi"},
                 annotations={"summary": "negative mentions of lumi above 100/day", **annotations})


def test_a_crisis_alert_passes_its_figure_to_the_run_and_the_page_says_it(intake: Intake, engine: Engine) -> None:
    """The alert says 180 negative mentions a day: the crisis run's page to PR says 180, not "not given"."""
    from flows.engine.view import variables
    from flows.language.expressions import render_text

    [outcome] = intake.alerts([_spike(mentions_per_day="179.6")], "token:alertmanager")  # Prometheus' {{ $value }}
    assert outcome.status == "started", outcome.problems
    view = engine.view(outcome.run or "")
    assert view.run["inputs"] and variables(view, engine.site)["inputs"]["mentions_per_day"] == 180
    page = next(s for s in view.sop.steps if s.id == "page")
    body = render_text(page.message.body, variables(view, engine.site))  # type: ignore[attr-defined]
    assert "Negative mentions in the last 24h: 180 (threshold 100/day)." in body, body


def test_a_crisis_alert_without_a_usable_figure_still_starts_its_run(intake: Intake, engine: Engine) -> None:
    """An alert rule that sends no figure, or words instead of a number, must not stop a P1 crisis run: the figure
    is not given (as a start by hand without it), the run starts."""
    for said in ({}, {"mentions_per_day": "420/day"}):
        [outcome] = intake.alerts([_spike(**said)], "token:alertmanager")
        assert outcome.status in ("started", "attached"), (said, outcome.problems)
        assert engine.view(outcome.run or "").run["inputs"]
    [run] = runs_of(engine, "crisis-pr")
    assert run["inputs"]["mentions_per_day"] is None and run["inputs"]["brand"] == "lumi"
