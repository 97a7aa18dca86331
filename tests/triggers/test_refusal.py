"""The refusal stage alone: an event whose inputs do not fit its SOP is recorded, counted, and said in a few words."""

from __future__ import annotations

from flows.engine.transitions import Engine
from flows.triggers.intake import Intake
from flows.triggers.model import Event
from flows.triggers.refusal import bounded, recent, said, why
from tests.triggers.conftest import records_of, runs_of


def test_an_event_whose_input_does_not_fit_is_recorded_and_its_repeat_counted(intake: Intake, engine: Engine) -> None:
    # ab-rollout's uplift_pct is a number: "much" is refused by the SOP (InputRefused), not by rendering
    event = Event("experiment.concluded", key="exp-9", values={"verdict": "winner", "experiment_id": "exp-9",
                                                               "uplift_pct": "much"})
    first, second = intake.event(event, "token:experiments")[0], intake.event(event, "token:experiments")[0]
    assert (first.status, first.sop, first.paged, second.paged) == ("refused", "ab-rollout", True, False)
    assert runs_of(engine) == []
    kept = records_of(engine, kind="trigger_refused")
    assert [(r["data"]["source"], r["data"]["subject"], r["data"]["count"], r["actor"]) for r in kept] == [
        ("event", "exp-9", 1, "token:experiments"), ("event", "exp-9", 2, "token:experiments")]
    [seen] = recent(engine.ledger, engine.clock.now())
    assert (seen.sop, seen.count) == ("ab-rollout", 2)
    assert said([seen]) == f"2 alerts refused in the last 24 h: ab-rollout — {first.problems[0]}"


def test_the_reason_in_a_few_words_and_labels_bounded() -> None:
    assert why(["input `brand`: '{{ trigger.labels.brand }}' cannot be rendered from the alert: the alert has no "
                "label `brand` (its labels: alertname, shop): set it where the alert is made, or …"]) == \
        "the alert has no label `brand`"
    assert why([]) == "its inputs were refused" and len(why(["x" * 500])) == 120
    assert len(bounded({f"l{i}": "v" * 900 for i in range(100)})) == 40
    assert set(map(len, bounded({"a": "v" * 900}).values())) == {200}
