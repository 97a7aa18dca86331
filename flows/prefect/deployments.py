"""SOP → Prefect flow and deployment.

Flow name = SOP id, task names = step ids, flow-run tags = class and SOP id, so the
Prefect UI reads like the playbook. The deployment's parameters are the SOP's typed inputs (the UI
renders them as the form to start a run); its work queue is the SOP's class, so with the
workers busy a complaint run starts before an older outage run.
"""

from __future__ import annotations

import inspect
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Flow, flow, task
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
from prefect.client.schemas.schedules import CronSchedule

from flows.language.library import Library, LoadedSop
from flows.language.spec import PRIORITY, SOP_CLASSES, Sop
from flows.language.steps import KINDS
from flows.language.steps.base import StepBase, pacing
from flows.language.steps.human import PY_TYPES
from flows.prefect.names import ENTRYPOINT_MODULE, POOL, deployment_name, python_name


def signature(sop: Sop) -> inspect.Signature:
    """The flow's parameters: one keyword per SOP input, typed, with its default."""
    params = []
    for name, spec in sop.inputs.items():
        annotation: Any = PY_TYPES[spec.type]
        if spec.enum:
            from typing import Literal

            annotation = Literal[tuple(spec.enum)]  # type: ignore[misc]
        default = spec.default if spec.default is not None else (inspect.Parameter.empty if spec.is_required else None)
        if default is None:
            annotation = annotation | None
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return inspect.Signature(params)


@dataclass(frozen=True)
class StepTask:
    """An automated step's Prefect task, paced on each run's clock (a drill at 600x waits 600 times less)."""

    step: StepBase
    #: the task as deployed: retry delays and timeout in real time (speed 1)
    task: Any

    def at(self, speed: float, tried: int = 0) -> Any:
        """The task with its retry delays and timeout on a run compressed ``speed`` times (:func:`pacing`), and the
        retries left after ``tried`` attempts already made (by a flow run put back between two attempts): the
        count and the doubling delays go on where they were."""
        if speed == 1 and not tried:
            return self.task
        paced = pacing(self.step, speed)
        return self.task.with_options(retries=max(0, self.step.retries - tried),
                                      retry_delay_seconds=list(paced.delays[tried:]) or 0, timeout_seconds=paced.timeout)


def step_task(sop: Sop, step: StepBase) -> StepTask:
    """The Prefect task of an automated step: retries with backoff, timeout, run+step cache key."""
    from flows.prefect.flow_run import execute_step

    def body(run_id: str) -> dict[str, Any]:
        return execute_step(run_id, step.id)

    body.__name__ = python_name(step.id)
    paced = pacing(step, 1.0)  # real time; StepTask.at puts them on a compressed run's clock
    return StepTask(step, task(
        name=step.id,
        retries=step.retries,
        retry_delay_seconds=list(paced.delays) or 0,
        timeout_seconds=paced.timeout,
        cache_key_fn=lambda _ctx, params: f"{params['run_id']}:{step.id}",
        persist_result=True,
        # no tags on the task: Prefect asks its server for tag concurrency slots before every
        # tagged task run (a round trip, slow on a busy server, for limits that do not exist;
        # docs/benchmarks.md). The flow run and the deployment carry the class and SOP id tags.
        description=step.title,
    )(body))


_pinned_tasks: dict[tuple[str, str], dict[str, StepTask]] = {}
_pinned_lock = threading.Lock()


def tasks_of(sop: Sop, deployed: dict[str, StepTask]) -> dict[str, StepTask]:
    """The tasks of the SOP version a run was started with (its pinned text): the deployment's own when its
    automated steps are the same (the usual case), else built once for that version — a run started before an
    edit of its SOP, or after an edit this long-lived process (``sop executor``) has not loaded."""
    automated = [s for s in sop.steps if KINDS[s.kind].automated]
    if all(s.id in deployed and deployed[s.id].step == s for s in automated):
        return deployed
    key = (sop.id, json.dumps([s.model_dump(mode="json") for s in automated], sort_keys=True))
    with _pinned_lock:
        if key not in _pinned_tasks:
            _pinned_tasks[key] = {s.id: step_task(sop, s) for s in automated}
        return _pinned_tasks[key]


def build_flow(loaded: LoadedSop) -> Flow:
    """The Prefect flow of one SOP (the engine loop lives in ``flows.prefect.flow_run``)."""
    sop = loaded.sop
    from flows.prefect.flow_run import run_sop

    tasks = {s.id: step_task(sop, s) for s in sop.steps if KINDS[s.kind].automated}

    def body(**inputs: Any) -> Any:  # the run's summary, or the state it ended in (flow_run.final_state)
        return run_sop(sop.id, inputs, lambda pinned: tasks_of(pinned, tasks))

    body.__name__ = python_name(sop.id)
    body.__doc__ = sop.description or sop.title
    body.__signature__ = signature(sop)  # type: ignore[attr-defined]
    return flow(name=sop.id, description=sop.title, persist_result=True, log_prints=False,
                validate_parameters=True)(body)


def parameter_schema(built: Flow) -> dict[str, Any]:
    """The OpenAPI schema of the flow's parameters (what the Prefect UI renders)."""
    from prefect.utilities.callables import parameter_schema as prefect_schema

    return prefect_schema(built.fn).model_dump_for_openapi()


def ensure_pool(client: Any, concurrency: int, pool: str = POOL) -> None:
    """The process work pool with one queue per class, complaint first (priority 1)."""
    try:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process", concurrency_limit=concurrency))
    except Exception:  # already there: keep it, refresh its limit
        from prefect.client.schemas.actions import WorkPoolUpdate

        client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=concurrency))
    existing = {q.name: q for q in client.read_work_queues(work_pool_name=pool)}
    for name in SOP_CLASSES:
        if name not in existing:
            try:
                client.create_work_queue(name=name, work_pool_name=pool, priority=PRIORITY[name])
            except Exception:  # another `sop deploy` made it a moment ago
                existing = {q.name: q for q in client.read_work_queues(work_pool_name=pool)}
                if name not in existing:
                    raise
        if name in existing and existing[name].priority != PRIORITY[name]:
            client.update_work_queue(existing[name].id, priority=PRIORITY[name])


def deployment_schedules(sop: Sop) -> list[DeploymentScheduleCreate]:
    """The SOP's ``schedule:`` triggers as Prefect deployment schedules (cron in the trigger's time zone).

    Each schedule carries its trigger's ``inputs`` as the flow run's parameters.
    """
    return [DeploymentScheduleCreate(schedule=CronSchedule(cron=t.schedule, timezone=t.timezone), active=True,
                                     parameters=dict(t.inputs))
            for t in sop.schedules()]


def deploy(client: Any, library: Library, env: dict[str, str], pool: str = POOL) -> dict[str, str]:
    """Create or update one deployment per SOP; returns sop id → deployment id."""
    root = str(Path(library.root).resolve())
    ids: dict[str, str] = {}
    for sop_id, loaded in sorted(library.sops.items()):
        sop = loaded.sop
        built = build_flow(loaded)
        flow_id = client.create_flow_from_name(sop.id)
        schedules = deployment_schedules(sop)
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=deployment_name(sop.id, pool), version=loaded.text_hash[:12], description=sop.title,
            work_pool_name=pool, work_queue_name=sop.class_, tags=[sop.class_, sop.id],
            entrypoint=f"{ENTRYPOINT_MODULE}.{python_name(sop.id)}", path=root,
            parameter_openapi_schema=parameter_schema(built), enforce_parameter_schema=True,
            schedules=schedules,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": root}}],
            job_variables={"env": {**env, "SOP_HOME": root}},
        )
        ids[sop_id] = str(deployment_id)
    return ids


def deploy_library(library: Library, api_url: str, env: dict[str, str]) -> dict[str, str]:
    """``sop deploy``: the work pool (its concurrency limit: settings.prefect.workers executors of
    settings.prefect.concurrency flow runs each), one queue per class and one deployment
    per SOP on the Prefect server at ``api_url``. Safe to run again and beside another: each part is created
    or updated. ``env`` is what flow runs inherit, without the API URL and auth string (they are readable in
    the UI: executors hand their own to the runs)."""
    from flows.prefect.launcher import prefect_client
    from flows.prefect.names import AUTH_ENV, pool_name

    pool = pool_name(library)
    kept = {k: v for k, v in env.items() if k.startswith(("SOP_", "PREFECT_")) and k not in ("PREFECT_API_URL", AUTH_ENV)}
    with prefect_client(api_url) as client:
        prefect = library.site.settings.prefect
        ensure_pool(client, prefect.concurrency * max(1, prefect.workers), pool)
        return deploy(client, library, kept, pool)
