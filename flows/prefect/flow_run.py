"""Inside a flow-run process: its library and engine (built once), the flow body, the task body.

The flow body of every SOP run: advance, run automated steps as tasks, suspend, repeat.

A flow run holds a process only while it executes automated steps. When nothing is left
but people (or timers) to wait for, it suspends — the process ends — and the engine resumes
it (with a signed token, :mod:`flows.prefect.resume`) after a report or a timer. On resume
Prefect reruns the flow from the top; the ledger knows what is done, and completed tasks
come back from Prefect's cache (key run id + step id), so nothing runs twice. A resume the
engine did not sign is recorded and logged, and the run keeps waiting on its people.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run

from flows.engine.build import build_engine, ledger_for, retire, runnable_library
from flows.engine.secrets import site_secret
from flows.engine.store import load_view
from flows.engine.transitions import CUT, FINISHED, Engine
from flows.engine.view import variables
from flows.language.library import Library
from flows.language.steps import KINDS, StepContext
from flows.language.steps.human import HumanStep
from flows.ledger.vocabulary import RecordKind, RunStatus, StepState
from flows.prefect.attempts import ATTEMPTS
from flows.prefect.names import RUN_TAG
from flows.prefect.resume import ResumeTokens, pause_key, resume_input, resume_keys

log = logging.getLogger("sop.flowrun")
_flow_run_engine: Engine | None = None
_flow_run_library: Library | None = None
_flow_run_lock = threading.Lock()
_resume_tokens: ResumeTokens | None = None
#: flow runs (and attempts) holding each engine (by ``id``), and the engines a reload replaced that some still hold
_holders: Counter[int] = Counter()
_retired: dict[int, Engine] = {}


def flow_run_library(sop_id: str | None = None) -> Library:
    """The SOP library of this flow-run process, loaded once.

    A flow-run process lives for one run (or until it suspends), so the library cannot
    change under it; loading it once instead of per step saves a library load per step.
    ``sop_id`` (the flow being loaded) narrows it to the site and that SOP when its file
    is ``sops/<id>.yaml``: a flow-run process needs nothing else.
    """
    global _flow_run_library
    with _flow_run_lock:
        if _flow_run_library is None or (sop_id is not None and sop_id not in _flow_run_library.sops):
            _flow_run_library = runnable_library(only=sop_id)
        return _flow_run_library


def use_library(library: Library) -> None:
    """Run every flow of this process on ``library`` (``sop executor``: the whole library, loaded once, and again
    at a reload): the engine is built again on it at its next use. A flow run under way keeps the engine it holds
    (:func:`held_engine`), and the last one to let go of it retires it; each run runs its pinned SOP text anyway."""
    global _flow_run_library, _flow_run_engine, _resume_tokens
    with _flow_run_lock:
        old = None
        if _flow_run_library is not None and _flow_run_library is not library:
            old, _flow_run_engine, _resume_tokens = _flow_run_engine, None, None
        _flow_run_library = library
        if old is not None and _holders[id(old)]:
            _retired[id(old)] = old
            old = None
    if old is not None:  # nothing runs on it
        _retire(old)


def flow_run_engine() -> Engine:
    """The engine of this flow-run process (no launcher), built once on the cached library.

    Building it also starts importing the notification stack (Apprise) in a background
    thread, so the first page the run sends does not wait for that import; not when a pager
    process is alive (it delivers the run's pages) and the SOP has no notify step.
    ``flows.prefect.entrypoint`` starts building it on a thread while Prefect loads the flow.
    """
    flow_run_library()
    with _flow_run_lock:
        return _current_engine()


def _current_engine() -> Engine:
    """(``_flow_run_lock`` held, the library loaded) the engine, built on the library of now when there is none."""
    global _flow_run_engine
    if _flow_run_engine is None:
        library = _flow_run_library
        assert library is not None, "flow_run_library() first"
        # `sop serve` migrated the ledger before it launched this flow run: no Alembic here
        _flow_run_engine = build_engine(library, migrate=False)
        notifies = any(s.kind == "notify" for loaded in library.sops.values() for s in loaded.sop.steps)  # type: ignore[attr-defined]
        if notifies or not _pager_process_alive(_flow_run_engine):  # else it only queues its pages
            threading.Thread(target=_warm_notifications, name="warm-notifications", daemon=True).start()
    return _flow_run_engine


@contextmanager
def held_engine() -> Iterator[Engine]:
    """This process's engine for a flow run (or one attempt of its step) until it lets go. An engine a reload
    replaced meanwhile (:func:`use_library`) is retired when the last flow run holding it lets go: each reload of
    ``sop executor`` left one behind, with its pager's delivery threads."""
    flow_run_library()
    with _flow_run_lock:
        engine = _current_engine()
        _holders[id(engine)] += 1
    try:
        yield engine
    finally:
        with _flow_run_lock:
            _holders[id(engine)] -= 1
            done = None
            if not _holders[id(engine)]:
                del _holders[id(engine)]
                done = _retired.pop(id(engine), None)
        if done is not None:
            _retire(done)


def _retire(engine: Engine) -> None:
    """An engine no flow run holds and a reload replaced: its pages in flight delivered, then its ledger closed
    unless the library of now runs on the same one (one ledger per database URL per process)."""
    retire(engine, ledger_for(flow_run_library(), migrate=False))


def _pager_process_alive(engine: Engine) -> bool:
    """A pager process delivers this stack's pages (see flows.engine.outbox); False when unsure."""
    from flows.engine.outbox import pager_alive

    try:
        with engine.ledger.read() as conn:
            return pager_alive(conn)
    except Exception:
        return False


def _warm_notifications() -> None:
    try:
        import notifications  # noqa: F401  (Apprise and its plugins: a slow import)
    except Exception:  # the page that needs it will report the error
        pass


def _run_id_for(engine: Any, sop_id: str, inputs: dict[str, Any], flow_run: Any) -> str:
    for tag in flow_run.tags or []:
        if tag.startswith(RUN_TAG):
            return tag[len(RUN_TAG):]
    existing = engine.run_for_flow_run(str(flow_run.id))
    if existing:
        return existing
    # started from the Prefect UI or a schedule: the ledger hears of it now
    initiator = "schedule" if getattr(flow_run, "auto_scheduled", False) else "prefect-ui"
    trigger: dict[str, Any] = {"kind": initiator, "flow_run": str(flow_run.id)}
    if initiator == "schedule":  # which firing it was, as Prefect's scheduler planned it (its deployment's schedule)
        expected = getattr(flow_run, "expected_start_time", None)
        trigger["scheduled_for"] = expected.isoformat() if expected is not None else None
    return engine.start(sop_id, inputs, initiator=initiator, trigger=trigger, flow_run_id=str(flow_run.id)).run_id


def resume_tokens() -> ResumeTokens:
    """This flow-run process's checker of resume tokens (the site's secret, read once)."""
    global _resume_tokens
    if _resume_tokens is None:
        _resume_tokens = ResumeTokens(site_secret(flow_run_library().root))
    return _resume_tokens


def _check_resume(engine: Engine, run_id: str, flow_run_id: Any) -> None:
    """When this flow run was resumed, check it was by the engine; record and log any other resume.

    A resume carries no report (reports are in the ledger already): the flow goes on from
    the ledger either way, so a refused resume changes nothing but the record it leaves.
    """
    count = engine.suspend_count(run_id)
    if count == 0:
        return  # never suspended: nothing resumed it
    from prefect.client.orchestration import get_client

    schema_key, response_key = resume_keys(count)
    try:
        with get_client(sync_client=True) as client:
            stored = {i.key: i.value for i in client.filter_flow_run_input(
                flow_run_id, key_prefix=f"suspended-wait-{count}-", limit=10, exclude_keys=set())}
    except Exception as exc:  # the run goes on from the ledger: an unchecked resume must not fail it
        log.warning("event=resume_unchecked run=%s flow_run=%s suspension=%d error=%s", run_id, flow_run_id, count, exc)
        return
    if schema_key not in stored:
        return  # this flow run never suspended there: it replaces one that died, nobody resumed it
    try:
        value = json.loads(stored[response_key]) if response_key in stored else {}
    except ValueError:
        value = None
    value = value if isinstance(value, dict) else {"?": value}
    reason = resume_tokens().check(value.get("token"), run_id, str(flow_run_id), count)
    if reason is None:
        return
    fields = sorted(str(k)[:40] for k in value if k != "token")[:20]  # what the resume claimed, bounded
    engine.note(run_id, None, RecordKind.RESUME_REFUSED, reason=reason, flow_run_id=str(flow_run_id),
                suspension=count, fields=fields)
    log.warning("event=resume_refused run=%s flow_run=%s suspension=%d reason=%s fields=%s", run_id, flow_run_id,
                count, reason, ",".join(fields) or "-")


def run_sop(sop_id: str, inputs: dict[str, Any], tasks_of: Callable[[Any], dict[str, Any]]) -> Any:
    """Drive one run until it finishes or waits on people (then suspend). ``tasks_of(sop)``: the Prefect tasks of
    the automated steps of the SOP version the run was started with."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None, "run_sop runs inside a flow run"
    with held_engine() as engine:  # a reload meanwhile leaves it to this run, which retires it at its end
        return _drive(engine, sop_id, inputs, context.flow_run, tasks_of)


def _drive(engine: Engine, sop_id: str, inputs: dict[str, Any], flow_run: Any,
           tasks_of: Callable[[Any], dict[str, Any]]) -> Any:
    run_id = _run_id_for(engine, sop_id, inputs, flow_run)
    engine.bind_flow_run(run_id, str(flow_run.id))
    _check_resume(engine, run_id, flow_run.id)
    while True:
        plan = engine.advance(run_id)
        if plan.finished:
            return final_state(engine.view(run_id))
        if plan.automated:
            futures = _submit(engine, run_id, plan, tasks_of(plan.sop))
            for step_id, future in futures.items():
                state = future.wait() or future.state
                if state is not None and not state.is_completed():
                    error = _error_text(future)
                    engine.complete(run_id, step_id, getattr(_exception(future), "outputs", {}) or {}, error=error)
            continue
        count = engine.begin_suspend(run_id)
        view = engine.view(run_id)
        waiting = [s for s in view.sop.steps if isinstance(s, HumanStep) and view.state(s.id) == StepState.ACTIVE]
        log.info("event=suspending run=%s waiting=%s", run_id, ",".join(s.id for s in waiting) or "-")
        suspend_flow_run(wait_for_input=resume_input(count), key=pause_key(count), timeout=None)
        _check_resume(engine, run_id, flow_run.id)  # only when Prefect returns instead of ending the process


def _submit(engine: Engine, run_id: str, plan: Any, tasks: dict[str, Any]) -> dict[str, Any]:
    """Start the plan's automated steps as task runs, each with the attempts it has left: an executor stopped while
    a step waited for its next attempt put the flow run back, and this one goes on counting (a step of ``retries:
    3`` is tried at most 4 times in all). A step with none left (its last attempt failed, and its flow run was lost
    before the failure was recorded) fails now with that attempt's reason."""
    futures = {}
    for step_id in plan.automated:
        task = tasks[step_id]
        failed = engine.failed_attempts(run_id, step_id)
        if len(failed) > task.step.retries:
            engine.complete(run_id, step_id, failed[-1].get("outputs") or {}, error=failed[-1].get("reason") or "failed")
            continue
        futures[step_id] = task.at(plan.speed, tried=len(failed)).submit(run_id)
    return futures


def final_state(view: Any) -> Any:
    """How the flow run ends, as the run did: Completed (done), Completed named "Rejected" (a rejection
    stood), Failed (a step failed), Cancelled (cancelled by any path). Prefect's UI then tells the truth."""
    from prefect.states import Cancelled, Completed, Failed

    run = view.run
    summary = {"run": run["id"], "status": run["status"], "outcome": run["outcome"],
               "steps": {s: r["state"] for s, r in view.steps.items()}}
    ended = [f"{s}: {r['state']}" for s, r in view.steps.items()
             if r["state"] in (StepState.FAILED, StepState.REJECTED, StepState.TIMED_OUT)]
    detail = f" ({', '.join(ended)})" if ended else ""
    if run["status"] == RunStatus.CANCELLED:
        return Cancelled(message=f"run {run['id']} {run['outcome'] or 'cancelled'}")
    if run["outcome"] == "failed":
        return Failed(message=f"run {run['id']} failed{detail}")
    if run["outcome"] == "rejected":
        return Completed(name="Rejected", message=f"run {run['id']} rejected{detail}", data=summary)
    return summary


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
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    """What a step's failure (or one attempt's) reads: the exception's text, else its name."""
    return str(exc) or type(exc).__name__


def execute_step(run_id: str, step_id: str) -> dict[str, Any]:
    """Run one automated step (inside its Prefect task) and record its outcome.

    On the last failed attempt the flow records the failure; every attempt raises so that
    Prefect retries with backoff. In a stopping executor no attempt starts (:mod:`flows.prefect.attempts`).
    """
    from prefect.context import TaskRunContext

    task_run = TaskRunContext.get()
    if task_run is None:  # called outside Prefect's task engine: nothing to wait for
        return _attempt(run_id, step_id)
    retries_left = task_run.task_run.run_count <= task_run.task.retries  # run_count: this attempt's number
    with ATTEMPTS.attempt(str(task_run.task_run.flow_run_id), retries_left):
        return _attempt(run_id, step_id)


def _attempt(run_id: str, step_id: str) -> dict[str, Any]:
    with held_engine() as engine:
        return _attempt_on(engine, run_id, step_id)


def _attempt_on(engine: Engine, run_id: str, step_id: str) -> dict[str, Any]:
    with engine.ledger.read() as conn:
        view = load_view(conn, run_id)
    step = view.sop.step(step_id)
    began = engine.mark_running(run_id, step_id, once=bool(getattr(step, "once", False)))
    if began == FINISHED:
        return {"skipped": "already finished"}
    if began == CUT:  # the step fails (the flow run goes on from the ledger): its owner is paged with the reason
        engine.complete(run_id, step_id, {}, error=CUT_REASON)
        return {"skipped": "cut"}
    ctx = StepContext(variables=variables(view, engine.site), run_id=run_id, pager=engine.pager, speed=view.speed)
    kind = KINDS[step.kind]
    if kind.simulate is not None and simulated_in_drill(view, step):  # a drill touches no real system
        outputs = kind.simulate(step, ctx)
        engine.note(run_id, step_id, RecordKind.STEP_SIMULATED, **{k: v for k, v in outputs.items() if k != "simulated"})
        engine.complete(run_id, step_id, outputs)
        return outputs
    try:
        outputs = kind.execute(step, ctx)  # type: ignore[misc]  # a ready step is automated
    except Exception as exc:  # a step's own failure, or anything else it raised (Prefect's timeout, a bug): an attempt
        engine.attempt_failed(run_id, step_id, _reason(exc), getattr(exc, "outputs", {}) or {}, of=step.retries + 1)
        raise
    engine.complete(run_id, step_id, outputs)
    return outputs


#: why a ``once`` step cut mid-attempt fails rather than run again (its ``step_failed``, its owner's page)
CUT_REASON = ("its attempt was cut (its executor or flow run was lost) and it is `once: true`: not made again, as it "
              "may have happened; check by hand whether it did")


def simulated_in_drill(view: Any, step: Any) -> bool:
    """A drill's http, command and notify steps are simulated unless the step says ``drill: live`` or the drill was
    started ``--live``."""
    return view.is_drill and not view.trigger.get("live") and getattr(step, "drill", "live") != "live"
