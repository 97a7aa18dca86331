"""An automated step's attempts are counted in the ledger, not per flow run: a flow run put back in its queue between
two attempts (its executor stopped) goes on with the attempts left. The process story (two executors, SIGTERM between
attempts) is tests/engine/test_durability.py's; here the edges, on the real engine and ledger, no Prefect server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.audit import Audit
from flows.clock import ManualClock
from flows.engine.transitions import ATTEMPT, CUT
from tests.engine.conftest import clocked_engine_of

PROBE = """\
id: t-flaky
title: Flaky call probe
class: outage
owner: sre-lead
steps:
  - id: call
    kind: http
    request:
      method: POST
      url: "{{ config.t_gateway }}/limits"
      expect: [200]
    retries: 2
    retry_delay: 20s
"""


#: the same call, which must not be made twice
ONCE_PROBE = PROBE.replace("id: t-flaky", "id: t-once").replace("    retries: 2", "    once: true\n    retries: 2")


@pytest.fixture
def engine(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: Any) -> Any:
    yield from clocked_engine_of(repo_root, tmp_path, monkeypatch, database.url_at(tmp_path / "ledger.db"),
                                 ManualClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC)),
                                 {"t-flaky": PROBE, "t-once": ONCE_PROBE})


def test_the_retries_left_go_on_from_the_attempts_made_with_their_doubling_delays(engine: Any) -> None:
    """`retries: 2`, 20 s apart (then 40 s), on a run at 8x: after one attempt made by a flow run put back, the next
    flow run's task has one retry left, 5 s after its attempt (the second delay), not two from the first."""
    from flows.prefect.deployments import step_task

    sop = engine.library.sops["t-flaky"].sop
    task = step_task(sop, sop.step("call"))
    assert (task.at(8).retries, task.at(8).retry_delay_seconds) == (2, [2.5, 5.0])
    assert (task.at(8, tried=1).retries, task.at(8, tried=1).retry_delay_seconds) == (1, [5.0])
    assert task.at(1, tried=2).retries == 0


def test_a_step_whose_every_attempt_failed_before_its_flow_run_was_lost_fails_without_another(engine: Any) -> None:
    """Three attempts of a step of `retries: 2` failed, and the flow run was lost before it recorded the step's
    failure (its executor killed): the next flow run makes no fourth attempt. The step fails at once with the last
    attempt's reason, its owner is paged, and the story reads attempt 1 of 3, 2 of 3, 3 of 3, then the failure."""
    from flows.prefect.deployments import tasks_of
    from flows.prefect.flow_run import _submit

    run_id = engine.start("t-flaky", {}, initiator="li-wei").run_id
    plan = engine.advance(run_id)
    assert plan.automated == ["call"]
    assert engine.mark_running(run_id, "call") == ATTEMPT
    for number in (1, 2, 3):
        assert engine.attempt_failed(run_id, "call", f"HTTP 500 (try {number})", {"status": 500}, of=3) == number

    assert _submit(engine, run_id, plan, tasks_of(plan.sop, {})) == {}  # nothing started
    view = engine.view(run_id)
    assert view.state("call") == "failed" and view.run["outcome"] == "failed"
    texts = [e["text"] for e in Audit(engine.ledger).show(run_id)["timeline"] if e["step"] == "call"]
    assert [t for t in texts if "attempt" in t or t.startswith("failed")] == [
        "attempt 1 of 3 failed: HTTP 500 (try 1)", "attempt 2 of 3 failed: HTTP 500 (try 2)",
        "attempt 3 of 3 failed: HTTP 500 (try 3)", "failed: HTTP 500 (try 3)"], texts


def test_an_attempt_that_raises_something_other_than_a_step_failure_is_counted_too(
        engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's own task timeout, or a bug in a step kind, raises something else than StepFailed: that attempt still
    counts (a flow run put back after it goes on with the retries left) and the story says why it failed."""
    import dataclasses

    from flows.language import steps
    from flows.prefect.flow_run import _attempt_on

    def hangs_up(step: Any, ctx: Any) -> dict[str, Any]:
        raise TimeoutError("task run exceeded its timeout of 30 s")

    monkeypatch.setitem(steps.KINDS, "http", dataclasses.replace(steps.KINDS["http"], execute=hangs_up))
    run_id = engine.start("t-flaky", {}, initiator="li-wei").run_id
    assert engine.advance(run_id).automated == ["call"]
    with pytest.raises(TimeoutError):
        _attempt_on(engine, run_id, "call")
    texts = [e["text"] for e in Audit(engine.ledger).show(run_id)["timeline"] if e["step"] == "call"]
    assert "attempt 1 of 3 failed: task run exceeded its timeout of 30 s" in texts, texts
    assert engine.attempt_failed(run_id, "call", "HTTP 500", {}, of=3) == 2  # the next attempt is the second


def test_a_once_step_is_tried_again_after_a_failed_attempt_but_not_after_a_cut_one(engine: Any) -> None:
    """`once: true` holds back only an attempt that was cut (begun, then neither ended nor failed: its executor
    killed): one that failed (HTTP 500) is retried as `retries` allows. The cut one's next flow run fails the step,
    saying it may have happened (the page to its owner: test_chaos.py); the story says which attempts began."""
    from flows.prefect.flow_run import _attempt_on

    run_id = engine.start("t-once", {}, initiator="li-wei").run_id
    assert engine.advance(run_id).automated == ["call"]
    assert engine.mark_running(run_id, "call", once=True) == ATTEMPT
    engine.attempt_failed(run_id, "call", "HTTP 500", {"status": 500}, of=3)
    assert engine.mark_running(run_id, "call", once=True) == ATTEMPT  # the second attempt begins … and is cut
    assert engine.view(run_id).state("call") == "running"

    assert _attempt_on(engine, run_id, "call") == {"skipped": "cut"}  # the next flow run makes no third
    view = engine.view(run_id)
    assert view.state("call") == "failed" and view.run["outcome"] == "failed"
    texts = [e["text"] for e in Audit(engine.ledger).show(run_id)["timeline"] if e["step"] == "call"]
    assert [t for t in texts if "attempt" in t or t.startswith("failed")] == [
        "attempt 1 started (once: not made again if cut)", "attempt 1 of 3 failed: HTTP 500",
        "attempt 2 started (once: not made again if cut)",
        "failed: its attempt was cut (its executor or flow run was lost) and it is `once: true`: not made again, as "
        "it may have happened; check by hand whether it did"], texts
    assert engine.mark_running(run_id, "call", once=True) != CUT  # finished: nothing more to decide
