"""Automated steps run in the executor's process: no process per flow run, still Prefect flow and task runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from uuid import UUID

from tests.engine.conftest import records, wait_for


def _tree(stack: Any) -> set[int]:
    """Every process of the stack's children (each leads a process group of its own)."""
    groups = {child.process.pid for child in stack.children}
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) in groups:
                    found.add(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


def test_ten_runs_start_their_automated_steps_without_a_process_each(engine: Any, stack: Any) -> None:
    before = _tree(stack)
    runs = [engine.start("t-kinds", {"uplift": 12}, initiator="li-wei", speed=600).run_id for _ in range(10)]
    for run_id in runs:  # measure (command) → settle (wait 10m = 1 s) → decide → roll-out (a person)
        wait_for(lambda run_id=run_id: engine.view(run_id).state("roll-out") == "active", 90,
                 f"run {run_id} to reach its person")
    after = _tree(stack)
    assert len(after) == len(before), (sorted(before), sorted(after))  # the same processes: none per run

    from flows.prefect.launcher import prefect_client

    flow_run_id = engine.view(runs[0]).run["flow_run_id"]
    with prefect_client(stack.api_url) as client:
        # the ledger names the person first; the flow run then suspends (its resume input, its Suspended state)
        wait_for(lambda: client.read_flow_run(UUID(flow_run_id)).state.is_paused(), 30, "the flow run to suspend")
        flow_run = client.read_flow_run(UUID(flow_run_id))
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        task_names = {t.name.rsplit("-", 1)[0] for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))}
    assert flow_run.name == f"t-kinds-{runs[0]}"  # waits on its person, suspended
    assert "measure" in task_names  # its command step a task run of the flow run (a check is the engine's)
    assert [r["step_id"] for r in records(engine, runs[0], "step_done")][:3] == ["measure", "settle", "decide"]


def test_the_executors_flow_runs_send_no_heartbeats(engine: Any, stack: Any) -> None:
    """Prefect 3.8 gives each flow run a heartbeat thread, joined (up to a second) when the run ends or suspends,
    and a heartbeat event stored by the server: in a storm that held the executor's threads. Its runs send none;
    the executor's own beat in the ledger is what finds a lost run."""
    from prefect.events.filters import EventAnyResourceFilter, EventFilter

    from flows.prefect.launcher import prefect_client

    run_id = engine.start("t-kinds", {"uplift": 12}, initiator="li-wei", speed=600).run_id
    wait_for(lambda: engine.view(run_id).state("roll-out") == "active", 90, "the run to reach its person")
    flow_run_id = engine.view(run_id).run["flow_run_id"]
    with prefect_client(stack.api_url) as client:
        def names() -> set[str]:  # a filter made now: its window ends when it is made
            about_it = EventFilter(any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
            return {event.event for event in client.read_events(about_it, limit=50).events}

        wait_for(lambda: "prefect.flow-run.Suspended" in names(), 30, "Prefect to store the run's Suspended event")
        seen = names()
    assert "prefect.flow-run.Running" in seen and "prefect.flow-run.heartbeat" not in seen, sorted(seen)


def test_a_run_of_an_sop_edited_after_the_executor_loaded_it_runs_its_own_version(engine: Any, stack: Any,
                                                                                  project: Path, gateway: Any) -> None:
    """An executor lives for days; an SOP edited meanwhile gains a step. A run started with the new text runs
    its new step (the executor builds that version's tasks), instead of crashing on a step it does not know."""
    from flows.runtime import engine as engine_of

    path = project / "sops" / "t-http.yaml"
    original = path.read_text()
    edited = original.replace("  - id: confirm\n    needs: [call]",
                              "  - id: note\n    kind: command\n    needs: [call]\n    command: [echo, noted]\n"
                              "  - id: confirm\n    needs: [note]")
    assert edited != original
    path.write_text(edited)
    try:
        run_id = engine_of(project).start("t-http", {}, initiator="li-wei").run_id
    finally:
        path.write_text(original)
    wait_for(lambda: engine.view(run_id).state("confirm") == "active", 90, "the edited run to reach its person",
             explain=lambda: {s: r["state"] for s, r in engine.view(run_id).steps.items()})
    assert engine.view(run_id).result("note")["stdout"].strip() == "noted"
