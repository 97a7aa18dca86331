"""On the real stack: a notify step with a `timeout` its delivery outlasts fails, and its run with it.

A notification nobody got never fails a notify step (its outputs say so); its time limit does, as an http call's
does: the webhook answers after 3 s, the message is delivered, and the step's Prefect task, past its 1 s, ends it
failed. So `sop validate` counts such a step among those that may fail a run (tests/language/test_unfinished_steps.py).
"""

from __future__ import annotations

from tests.engine.conftest import records, step_states, wait_for


def test_a_notify_step_whose_delivery_outlasts_its_timeout_fails_the_run(engine, gateway):
    gateway.hang = 3.0
    run = engine.start("t-notify-limit", {}, initiator="li-wei").run_id
    wait_for(lambda: not engine.view(run).is_open, 90, "the run to end")

    assert engine.view(run).run["outcome"] == "failed"
    assert step_states(engine, run) == {"tell": "failed", "after": "blocked"}
    assert [r["path"] for r in gateway.requests] == ["/hook"]  # the message went out all the same
    [failed] = records(engine, run, "step_failed")
    assert "timed out after 1.0 second" in failed["data"]["reason"], failed["data"]["reason"]
