"""The body of every SOP flow run: advance, run automated steps as tasks, suspend, repeat.

A flow run holds a process only while it executes automated steps. When nothing is left
but people (or timers) to wait for, it suspends — the process ends — and is resumed by a
report, a timer, or the Prefect UI's resume form. On resume Prefect reruns the flow from
the top; the ledger knows what is done, and completed tasks come back from Prefect's
cache (key run id + step id), so nothing runs twice.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run

from flows import runtime
from flows.runview import load_view
from flows.spec import HumanStep
from flows.steps import AUTOMATED, StepContext, StepFailed, human

log = logging.getLogger("sop.flowrun")
RUN_TAG = "sop-run:"


def _run_id_for(engine: Any, sop_id: str, inputs: dict[str, Any], flow_run: Any) -> str:
    for tag in flow_run.tags or []:
        if tag.startswith(RUN_TAG):
            return tag[len(RUN_TAG):]
    existing = engine.run_for_flow_run(str(flow_run.id))
    if existing:
        return existing
    # started from the Prefect UI or a schedule: the ledger hears of it now
    initiator = "schedule" if getattr(flow_run, "auto_scheduled", False) else "prefect-ui"
    trigger = {"kind": initiator, "flow_run": str(flow_run.id)}
    return engine.start(sop_id, inputs, initiator=initiator, trigger=trigger, flow_run_id=str(flow_run.id)).run_id


def _apply_ui_report(engine: Any, run_id: str, flow_run_id: Any) -> None:
    """A report typed into the Prefect UI's resume form arrives as flow run input."""
    count = engine.suspend_count(run_id)
    if count == 0:
        return  # never suspended: no resume form was filled in (and no run view is built for it)
    from prefect.input.run_input import read_flow_run_input

    value = read_flow_run_input(f"suspended-wait-{count}-response", flow_run_id=flow_run_id)
    if not value or not value.get("step") or not value.get("actor"):
        return
    step_id = value["step"]
    view = engine.view(run_id)
    if view.steps.get(step_id, {}).get("state") != "active":
        return  # already applied (or the step moved on): nothing to do
    step = view.sop.step(step_id)
    fields = getattr(step, "form", {})
    report = human.Report(actor=value["actor"], outcome=value.get("outcome") or "done",
                          values={k: v for k, v in value.items() if k in fields and v is not None},
                          note=value.get("note") or "", evidence=[value["evidence"]] if value.get("evidence") else [])
    try:
        engine.report(run_id, step_id, report, nudge=False)
    except (human.ReportRefused, ValueError) as exc:
        engine.note(run_id, step_id, "report_refused", actor=value.get("actor"), reason=str(exc))
        log.warning("event=ui_report_refused run=%s step=%s reason=%s", run_id, step_id, exc)


def run_sop(sop_id: str, inputs: dict[str, Any], tasks: dict[str, Any]) -> dict[str, Any]:
    """Drive one run until it finishes or waits on people (then suspend)."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None, "run_sop runs inside a flow run"
    flow_run = context.flow_run
    engine = runtime.flow_run_engine()
    run_id = _run_id_for(engine, sop_id, inputs, flow_run)
    engine.bind_flow_run(run_id, str(flow_run.id))
    _apply_ui_report(engine, run_id, flow_run.id)
    while True:
        plan = engine.advance(run_id)
        if plan.finished:
            view = engine.view(run_id)
            return {"run": run_id, "status": view.run["status"], "outcome": view.run["outcome"],
                    "steps": {s: r["state"] for s, r in view.steps.items()}}
        if plan.automated:
            futures = {step_id: tasks[step_id].submit(run_id) for step_id in plan.automated}
            for step_id, future in futures.items():
                state = future.wait() or future.state
                if state is not None and not state.is_completed():
                    error = _error_text(future)
                    engine.complete(run_id, step_id, getattr(_exception(future), "outputs", {}) or {}, error=error)
            continue
        count = engine.begin_suspend(run_id)
        view = engine.view(run_id)
        waiting = [s for s in view.sop.steps if isinstance(s, HumanStep) and view.state(s.id) == "active"]
        log.info("event=suspending run=%s waiting=%s", run_id, ",".join(s.id for s in waiting) or "-")
        suspend_flow_run(wait_for_input=human.input_model(waiting), key=f"wait-{count}", timeout=None)
        _apply_ui_report(engine, run_id, flow_run.id)


def _exception(future: Any) -> BaseException | None:
    try:
        future.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001 - we want the task's own error
        return exc
    return None


def _error_text(future: Any) -> str:
    exc = _exception(future)
    if exc is None:
        return f"task ended {future.state.name if future.state else 'without a state'}"
    return str(exc) or type(exc).__name__


def execute_step(run_id: str, step_id: str) -> dict[str, Any]:
    """Run one automated step (inside its Prefect task) and record its outcome.

    On the last failed attempt the flow records the failure; every attempt raises so that
    Prefect retries with backoff.
    """
    engine = runtime.flow_run_engine()
    if not engine.mark_running(run_id, step_id):
        return {"skipped": "already finished"}
    with engine.ledger.read() as conn:
        view = load_view(conn, run_id)
    step = view.sop.step(step_id)
    from flows.runview import variables

    ctx = StepContext(variables=variables(view, engine.site), run_id=run_id, pager=engine.pager)
    try:
        outputs = AUTOMATED[step.kind](step, ctx)  # type: ignore[attr-defined]
    except StepFailed as exc:
        engine.note(run_id, step_id, "step_attempt_failed", reason=str(exc), outputs=exc.outputs)
        raise
    engine.complete(run_id, step_id, outputs)
    return outputs
