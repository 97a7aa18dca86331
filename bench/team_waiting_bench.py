"""Runs waiting on a person, team mode (issue 19): docs/team.md's processes on PostgreSQL, Prefect's too.

One command: a private PostgreSQL cluster (tests/postgres.py) holding the page's two databases, the page's
Prefect server on it, ``sop deploy``, then ``BENCH_TEAM_EXECUTORS`` executors (1), a timer service, a nudger, a
pager and ``BENCH_TEAM_APIS`` API processes (2), each started with the page's command (bench/team_processes.py).
``BENCH_TEAM_WAITING`` runs (200) of a probe whose first step is a person's are started through the APIs
from 4 threads, as a console would. Figures: seconds to start them all (every ``POST /v1/runs`` answered
201), and seconds from the first start until Prefect shows every one of their flow runs Suspended (goal: at
most 60 s), with the load average before and after (the machine is shared: read the figure beside it).
Writes ``bench/out/team_waiting.json``.

``python -m bench team_waiting``
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.team_page import ROOT
from bench.team_processes import Team
from tests.postgres import PostgresCluster

WAITING = int(os.environ.get("BENCH_TEAM_WAITING", "200"))
EXECUTORS = int(os.environ.get("BENCH_TEAM_EXECUTORS", "1"))
APIS = int(os.environ.get("BENCH_TEAM_APIS", "2"))
GOAL_S = 60.0
OUT = Path(__file__).parent / "out" / "team_waiting.json"

#: a run whose first step waits on a person: its flow run starts, finds nothing to run, and suspends
PROBE = """\
id: team-wait
title: Team bench probe (waits on a person)
class: routine
owner: growth-lead
steps:
  - id: confirm
    assignee: growth-lead
    due: 1h
"""


def say(message: str) -> None:
    print(f"[team] {message}", flush=True)


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _suspended(env: dict[str, str]) -> int:
    """How many flow runs of ``team-wait`` Prefect shows Suspended (Paused) now."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.count_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["team-wait"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))


def measure(team: Team, apis: list[str], token: str, n: int) -> dict[str, Any]:
    """Start ``n`` runs through the APIs from 4 threads; time until all answered and until all are suspended."""
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):  # this process's Prefect client, as the team's
        os.environ[name] = team.env[name]
    _suspended(team.env)  # the client's import and first call, before the clock starts
    load_before = _load()
    t0 = time.monotonic()

    def start(i: int) -> str:
        answer = httpx.post(f"{apis[i % len(apis)]}/v1/runs", headers={"Authorization": f"Bearer {token}"},
                            json={"sop": "team-wait"}, timeout=120)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /v1/runs answered {answer.status_code}: {answer.text}")
        return answer.json()["run"]

    with ThreadPoolExecutor(4) as pool:
        run_ids = list(pool.map(start, range(n)))
    starting_s = time.monotonic() - t0
    say(f"{n} runs started in {starting_s:.1f}s; waiting for every flow run to suspend")
    last, suspended = -1, 0
    while suspended < n:
        suspended = _suspended(team.env)
        if suspended != last:
            say(f"  {suspended}/{n} suspended at {time.monotonic() - t0:.1f}s")
            last = suspended
        if time.monotonic() - t0 > 1800:
            raise RuntimeError(f"only {suspended} of {n} flow runs suspended after 30 min")
        time.sleep(0.5)
    all_suspended_s = time.monotonic() - t0
    return {"runs": len(run_ids), "executors": EXECUTORS, "apis": len(apis), "starting_s": round(starting_s, 1),
            "all_suspended_s": round(all_suspended_s, 1), "goal_s": GOAL_S, "met": all_suspended_s <= GOAL_S,
            "load_before": load_before, "load_after": _load()}


def main() -> None:
    cluster = PostgresCluster().start()
    work = Path(tempfile.mkdtemp(prefix="sop-team-bench-"))
    root = work / "site"
    shutil.copytree(ROOT / "config", root / "config")
    (root / "sops").mkdir(parents=True)
    (root / "sops" / "team-wait.yaml").write_text(PROBE)
    (root / "var").mkdir()
    token = secrets.token_hex(16)
    team = Team(cluster, root, work / "logs", extra_env={"SOP_TOKEN_OPERATOR": token,
                                                         "PREFECT_LOGGING_LEVEL": "WARNING"})
    try:
        team.databases()
        team.prefect_server()
        [deploy] = team.run("deployer")
        if deploy.exit_code != 0:
            raise RuntimeError(f"sop deploy exited with {deploy.exit_code}:\n{deploy.tail()}")
        services = [team.start("executor") for _ in range(EXECUTORS)]
        services += [team.start(role) for role in ("timers", "nudger", "pager")]
        apis = [team.api() for _ in range(APIS)]
        team.ready(*services, *apis)
        say(f"{len(services) + len(apis)} processes up (Prefect and the ledger on PostgreSQL); load {_load()}")
        result = measure(team, [team.api_url(api) for api in apis], token, WAITING)
    finally:
        team.stop()
        cluster.stop()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"| {result['runs']} runs waiting on a person, Prefect and the ledger on PostgreSQL "
          f"({result['executors']} executor, {result['apis']} APIs) | started in {result['starting_s']} s | "
          f"all suspended {result['all_suspended_s']} s after the first start (goal ≤ {GOAL_S:.0f} s: "
          f"{'met' if result['met'] else 'NOT met'}) | load {result['load_before']} → {result['load_after']} |")
    print(f"logs in {work / 'logs'}; {OUT}")


if __name__ == "__main__":
    main()
