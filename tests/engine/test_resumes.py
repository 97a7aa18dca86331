"""A run's flow run and its people: born waiting, resumed by reports, and ending as the run did."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flows.language.steps.human import HumanReport
from flows.prefect.launcher import prefect_client
from tests.engine.conftest import records, wait_for


def _flow_run(stack: Any, flow_run_id: str) -> Any:
    with prefect_client(stack.api_url) as client:
        return client.read_flow_run(UUID(flow_run_id))


def test_a_run_that_starts_with_a_person_is_born_suspended_and_runs_once_they_answer(engine: Any, stack: Any) -> None:
    run_id = engine.start("t-link", {"dashboard": "https://grafana.example.com/d/1"}, initiator="li-wei").run_id
    flow_run_id = wait_for(lambda: engine.view(run_id).run["flow_run_id"], 30, "the run's flow run")

    # no executor took it only to suspend it: Prefect shows it Suspended on its person from the start
    flow_run = _flow_run(stack, flow_run_id)
    assert flow_run.state.is_paused() and flow_run.state.name == "Suspended"
    assert flow_run.start_time is None and flow_run.run_count == 0
    [created] = records(engine, run_id, "flow_run_created")
    assert created["data"].get("suspended") is True

    engine.report(run_id, "look", HumanReport(actor="zhao-lei", values={}))
    wait_for(lambda: _flow_run(stack, flow_run_id).state.is_completed(), 60, "the flow run to complete",
             explain=lambda: _flow_run(stack, flow_run_id).state)
    assert engine.view(run_id).run["outcome"] == "done"
    assert records(engine, run_id, "resume_refused") == []  # resumed by the engine's own token


def test_the_last_report_racing_the_flow_runs_suspension_still_ends_its_flow_run(engine: Any, stack: Any) -> None:
    """The last answer closes the run while its flow run is still busy (between a resume and its next
    suspension): nothing can be resumed then. Once the flow run is suspended the nudger resumes it, and it
    ends Completed, instead of staying Suspended for ever under a finished run."""
    from prefect.states import Running

    from flows.prefect.resume import born_suspended

    run_id = engine.start("t-link", {"dashboard": "d"}, initiator="li-wei").run_id
    flow_run_id = wait_for(lambda: engine.view(run_id).run["flow_run_id"], 30, "the run's flow run")
    wait_for(lambda: _flow_run(stack, flow_run_id).state.is_paused(), 30, "the flow run to wait on its person")
    with prefect_client(stack.api_url) as client:  # the flow run is busy: resumed a moment ago, still running
        client.set_flow_run_state(UUID(flow_run_id), Running(), force=True)

    engine.report(run_id, "look", HumanReport(actor="zhao-lei", values={}))  # the run's last step: it finishes
    assert engine.view(run_id).run["status"] == "finished"
    wait_for(lambda: engine.view(run_id).run["nudge"], 10, "the finished run to be flagged for a resume")

    with prefect_client(stack.api_url) as client:  # the flow run suspends, as it was about to
        client.set_flow_run_state(UUID(flow_run_id), born_suspended(engine.suspend_count(run_id)), force=True)
    wait_for(lambda: _flow_run(stack, flow_run_id).state.is_completed(), 60, "the flow run to complete",
             explain=lambda: _flow_run(stack, flow_run_id).state)
    wait_for(lambda: not engine.view(run_id).run["nudge"], 10, "the flag to be cleared")
    assert records(engine, run_id, "resume_refused") == []


def test_a_flow_run_whose_process_died_before_storing_its_resume_schema_is_still_resumed(engine: Any,
                                                                                          stack: Any) -> None:
    """Prefect's ``suspend_flow_run`` stores the resume input's schema after the Suspended state: an executor
    killed between the two (the chaos test's seed 161303865) left a flow run that Prefect would not resume
    ("Run input schema not found"), its run finished in the ledger and never in Prefect. The launcher stores the
    schema as the flow would have, and resumes."""
    from flows.prefect.resume import resume_keys

    run_id = engine.start("t-link", {"dashboard": "https://grafana.example.com/d/1"}, initiator="li-wei").run_id
    flow_run_id = wait_for(lambda: engine.view(run_id).run["flow_run_id"], 30, "the run's flow run")
    suspension = int(_flow_run(stack, flow_run_id).state.state_details.pause_key.removeprefix("wait-"))
    with prefect_client(stack.api_url) as client:  # what the dead process never wrote
        client.delete_flow_run_input(UUID(flow_run_id), key=resume_keys(suspension)[0])

    engine.report(run_id, "look", HumanReport(actor="zhao-lei", values={}))
    wait_for(lambda: _flow_run(stack, flow_run_id).state.is_completed(), 60, "the flow run to complete",
             explain=lambda: _flow_run(stack, flow_run_id).state)
    assert engine.view(run_id).run["outcome"] == "done"
    assert records(engine, run_id, "resume_refused") == []


def test_a_resume_before_a_live_flow_run_stored_its_schema_leaves_the_schema_to_the_flow_run(
        engine: Any, stack: Any, monkeypatch: Any) -> None:
    """A live flow run stores its resume input's schema a moment after its Suspended state. A resume in that moment
    is turned away ("schema not found"): the launcher tries again later and stores no schema itself, which would
    make the flow run's own store a 409 and fail the flow run (2 of 10 runs in a fresh-clone test_ten_runs)."""
    import httpx
    import pytest

    from flows.prefect import launcher
    from flows.prefect.resume import born_suspended, expect_resume_input, resume_keys

    monkeypatch.setattr(launcher, "SCHEMA_GRACE_S", 120.0)  # however slow this machine, the resume is within it
    run_id = engine.start("t-link", {"dashboard": "https://grafana.example.com/d/2"}, initiator="li-wei").run_id
    flow_run_id = wait_for(lambda: engine.view(run_id).run["flow_run_id"], 30, "the run's flow run")
    suspension = int(_flow_run(stack, flow_run_id).state.state_details.pause_key.removeprefix("wait-"))
    key = resume_keys(suspension)[0]
    with prefect_client(stack.api_url) as client:  # that moment: Suspended just now, its schema not stored yet
        client.set_flow_run_state(UUID(flow_run_id), born_suspended(suspension), force=True)
        client.delete_flow_run_input(UUID(flow_run_id), key=key)

    engine.report(run_id, "look", HumanReport(actor="zhao-lei", values={}))  # the run finishes: its flow run is resumed
    assert engine.launcher.settle_nudges(10)
    with prefect_client(stack.api_url) as client:
        with pytest.raises(httpx.HTTPStatusError) as missing:  # turned away, and left to the flow run
            client.read_flow_run_input(UUID(flow_run_id), key=key)
        assert missing.value.response.status_code == 404
        assert not _flow_run(stack, flow_run_id).state.is_final()
        expect_resume_input(client, UUID(flow_run_id), suspension)  # the flow run's own store, a moment late
    wait_for(lambda: _flow_run(stack, flow_run_id).state.is_completed(), 60, "the flow run to complete",
             explain=lambda: _flow_run(stack, flow_run_id).state)
    assert engine.view(run_id).run["outcome"] == "done"
    assert records(engine, run_id, "resume_refused") == []


def test_stopping_sop_serve_waits_for_the_resume_a_report_started_before_stopping_its_prefect_server(
        stack_of_its_own: Any, monkeypatch: Any) -> None:
    """A report resumes its run's flow run on a thread, a moment after it is recorded. ``sop serve`` stopped in
    that moment stopped the Prefect server it started under the resume: the resume failed and the flow run waited,
    Suspended, for the next start's nudger. The stack lets the resume finish before it stops its server."""
    import threading
    import time

    from flows.runtime.serve import healthy

    stack = stack_of_its_own(("t-link",), workers=0, api=False, pager=False, timers=False)
    engine = stack.engine
    run_id = engine.start("t-link", {"dashboard": "d"}, initiator="li-wei").run_id
    flow_run_id = wait_for(lambda: engine.view(run_id).run["flow_run_id"], 30, "the run's flow run")
    wait_for(lambda: _flow_run(stack, flow_run_id).state.is_paused(), 30, "the flow run to wait on its person")
    resume, settle = engine.launcher._resume, engine.launcher.settle_nudges
    settling = threading.Event()

    def settle_watched(timeout: float) -> bool:
        settling.set()
        return settle(timeout)

    def slow_resume(run: str) -> Any:
        """A resume slow to reach the Prefect server: it goes once the stopping stack waits for it, or once the
        server no longer answers (a stack that does not wait)."""
        deadline = time.monotonic() + 60
        while not settling.is_set() and healthy(stack.api_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        return resume(run)

    monkeypatch.setattr(engine.launcher, "settle_nudges", settle_watched)
    monkeypatch.setattr(engine.launcher, "_resume", slow_resume)
    engine.report(run_id, "look", HumanReport(actor="zhao-lei", values={}))
    assert engine.view(run_id).run["nudge"]  # recorded, its resume under way
    stack.stop()
    assert not engine.view(run_id).run["nudge"]  # resumed before the server stopped: nothing left for a next start
    assert engine.view(run_id).run["outcome"] == "done"
