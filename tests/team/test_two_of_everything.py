"""Several of everything at once (issue 19, item 5): a team's processes, two of each, on one PostgreSQL and
one Prefect server, started with docs/team.md's own commands (bench/team_recipe.py reads them), then one
copy's executor, timer service and nudger killed -9 mid-run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bench.team_page import BIN
from bench.team_processes import Process, Team
from flows.ledger import Ledger
from flows.ledger.schema import executors, outbox, runs, steps
from tests.engine.conftest import assert_timers_fired_once, kind_records, wait_for
from tests.postgres import PostgresCluster

pytestmark = pytest.mark.alone  # `make test` runs it after the others, with the machine to itself

HERE = Path(__file__).resolve().parent
SPEED = 600
#: runs started before the kill, and after it (on what is left)
BEFORE, AFTER = 4, 2
#: who answers chaos-chain's human steps (the primaries of growth-lead and data-analyst), each with a token of
#: their own, through either API process; a person answers a while after the step is theirs, so its ladder fires
PEOPLE = {"review": ("zhang-min", "SOP_TOKEN_REVIEWER"), "analyse": ("priya-nair", "SOP_TOKEN_ANALYST")}
ANSWER_AFTER = 4.0
#: the nudgers look for lost flow runs every second and requeue one 3 s after no executor names it
FAST_SWEEP = ("--sweep-every", "1", "--rescue-grace", "3")
#: what a unique constraint or a duplicate deployment looks like in a log (PostgreSQL, SQLAlchemy, Prefect)
DUPLICATE = re.compile(r"UniqueViolation|duplicate key|IntegrityError|already exists|ObjectAlreadyExists", re.I)


def _project(repo_root: Path, target: Path) -> Path:
    """The repo's config, the chaos probe (a command step, a wait, two people with a ladder, a command step) and
    a responder token for each of its people."""
    shutil.copytree(repo_root / "config", target / "config")
    (target / "sops").mkdir(parents=True)
    shutil.copy(repo_root / "tests" / "engine" / "chaos_sops" / "chaos-chain.yaml", target / "sops")
    (target / "var").mkdir()
    with open(target / "config" / "tokens.yaml", "a") as tokens:
        for person, env in PEOPLE.values():
            tokens.write(f"  {person}-phone:\n    env: {env}\n    role: responder\n    person: {person}\n")
    return target


def _ledger_rows(ledger: Ledger, query: sa.Select) -> list[sa.Row]:
    with ledger.read() as conn:
        return list(conn.execute(query))


@pytest.mark.timeout(300)  # ~100 s on a quiet 2-core machine
def test_two_of_every_process_on_one_postgresql_lose_nothing_and_do_nothing_twice(team_cluster: PostgresCluster,
                                                                                   repo_root, tmp_path):
    """Two `sop deploy` at once, then two executors, two timer services, two nudgers, two APIs and a pager, all
    started as docs/team.md writes them, on the page's two databases in one private cluster, with one Prefect
    server on PostgreSQL. Six chaos-chain runs at 600× (deadline 48 s, a ladder on `review`) are started through
    both APIs; their people answer through both APIs, a few seconds late so that ladders fire. While the first
    four run, one copy's executor (holding a flow run mid-step), timer service and nudger are killed -9, then
    started again as systemd does (the new ones race the survivors).

    A team sees: both deploys exit 0 and no log names a unique constraint or a duplicate; every run finishes
    done; each flow run the dead executor held is rescued once (one ``flow_run_rescued``, fenced) and no flow
    run is created twice; every timer fired once (no escalation level twice, none lost); every page went out
    once (one ``notification`` record per outbox row, none delivered twice); `sop audit verify` passes; and
    what is left stops cleanly on SIGTERM."""
    began = time.monotonic()
    root = _project(repo_root, tmp_path / "site")
    operator, tokens = secrets.token_hex(16), {env: secrets.token_hex(16) for _, env in PEOPLE.values()}
    team = Team(team_cluster, root, tmp_path / "logs", extra_env={
        "SOP_TOKEN_OPERATOR": operator, **tokens, "SOP_PREFECT_POOL": f"team-{os.getpid()}",
        "PREFECT_LOGGING_LEVEL": "WARNING"})
    ledger = Ledger(team.env["SOP_DATABASE_URL"])  # connects on first use, once the page's database exists
    marker = tmp_path / "marker.txt"
    killed: dict[str, Process] = {}
    run_ids: list[str] = []
    lost: set[str] = set()
    try:
        team.databases()
        team.prefect_server()
        deploys = team.run("deployer", copies=2)
        assert [d.exit_code for d in deploys] == [0, 0], "\n".join(d.tail() for d in deploys)

        started = [team.start(role, args=args) for role, args in (
            ("executor", ()), ("executor", ()), ("timers", ()), ("timers", ()),
            ("nudger", FAST_SWEEP), ("nudger", FAST_SWEEP), ("pager", ()))]
        api_processes = [team.api() for _ in range(2)]
        team.ready(*started, *api_processes)
        apis = [team.api_url(api) for api in api_processes]

        def start_run() -> None:
            answer = httpx.post(f"{apis[len(run_ids) % 2]}/v1/runs", headers={"Authorization": f"Bearer {operator}"},
                                json={"sop": "chaos-chain", "inputs": {"marker": str(marker)}, "speed": SPEED},
                                timeout=60)
            assert answer.status_code == 201, answer.text
            run_ids.append(answer.json()["run"])

        for _ in range(BEFORE):
            start_run()

        def preparing() -> set[str]:
            return {r.run_id for r in _ledger_rows(ledger, sa.select(steps.c.run_id).where(
                (steps.c.step_id == "prepare") & (steps.c.state == "running")))}

        def held_mid_step() -> tuple[Process, set[str]] | None:
            """An executor whose beat names flow runs whose first step runs, and the runs (either executor: which
            one takes a run is Prefect's race)."""
            beats = _ledger_rows(ledger, sa.select(executors.c.pid, executors.c.flow_runs))
            bound = dict(_ledger_rows(ledger, sa.select(runs.c.flow_run_id, runs.c.id)))
            running = preparing()
            for executor in started[:2]:
                flow_runs = {f for beat in beats if beat.pid == executor.popen.pid
                             for f in json.loads(beat.flow_runs or "[]")}
                held = {bound[f] for f in flow_runs if f in bound} & running
                if held:
                    return executor, held
            return None

        victim, held = wait_for(held_mid_step, 60, "an executor to hold a flow run mid-step", interval=0.1)
        for process in (victim, started[2], started[4]):  # an executor, a timer service, a nudger
            os.kill(process.popen.pid, signal.SIGKILL)
            killed[process.label] = process
        lost = held & preparing()  # its beat is up to 2 s old: a step that ended just before the kill was not cut
        assert lost, f"the kill came as {held}'s first step ended: no flow run was cut mid-step"
        # systemd starts them again (Restart=on-failure): the new timer service and nudger race the survivors
        # for the same timers and the same lost flow runs; the new executor has a name of its own
        for role, args in (("executor", ()), ("timers", ()), ("nudger", FAST_SWEEP)):
            team.start(role, args=args)
        for _ in range(AFTER):
            start_run()

        seen: dict[tuple[str, str], float] = {}
        answered: set[tuple[str, str]] = set()

        def answer_people() -> bool:
            """Each person answers their active step ANSWER_AFTER s after first seeing it; True when all runs end."""
            active = _ledger_rows(ledger, sa.select(steps.c.run_id, steps.c.step_id).where(
                (steps.c.kind == "human") & (steps.c.state == "active")))
            now = time.monotonic()
            for row in active:
                key = (row.run_id, row.step_id)
                if key in answered or now - seen.setdefault(key, now) < ANSWER_AFTER:
                    continue
                person, env = PEOPLE[row.step_id]
                said = httpx.post(f"{apis[len(answered) % 2]}/v1/runs/{row.run_id}/steps/{row.step_id}",
                                  headers={"Authorization": f"Bearer {tokens[env]}"}, json={}, timeout=60)
                assert said.status_code == 200, f"{person} on {key}: {said.status_code} {said.text}"
                answered.add(key)
            return not _ledger_rows(ledger, sa.select(runs.c.id).where(
                runs.c.id.in_(run_ids) & (runs.c.status == "running")))

        wait_for(answer_people, 150, "every run to finish (the rescue waits for the dead executor's beat to age)",
                 interval=0.3)
        verified = subprocess.run([str(BIN / "sop"), "audit", "verify"], env=team.env, cwd=root, capture_output=True,
                                  text=True, timeout=120)
    finally:
        stopped = team.stop()
    context = f"runs={run_ids} lost={sorted(lost)} logs={tmp_path / 'logs'} ({time.monotonic() - began:.0f}s)"

    logs = {p.label: p.tail(1_000_000) for p in stopped}
    duplicates = {label: DUPLICATE.findall(text) for label, text in logs.items() if DUPLICATE.search(text)}
    assert not duplicates, f"{context}: {duplicates}"

    outcomes = Counter(r.outcome for r in _ledger_rows(ledger, sa.select(runs.c.outcome).where(runs.c.id.in_(run_ids))))
    assert outcomes == {"done": BEFORE + AFTER}, f"{context}: {outcomes}"
    assert len(answered) == 2 * len(run_ids), f"{context}: answered {answered}"

    rescued = Counter(run for run, _, _ in kind_records(ledger, "flow_run_rescued"))
    replaced = Counter(run for run, _, data in kind_records(ledger, "flow_run_created") if data.get("replaces"))
    relaunched = rescued + replaced
    # every run held mid-step by the dead executor is relaunched, once; others it held may be too (its last beat is
    # up to 2 s old), but only runs started before the kill
    assert lost <= set(relaunched) <= set(run_ids[:BEFORE]) and set(relaunched.values()) == {1}, \
        f"{context}: rescued {rescued}, replaced {replaced}"
    created = Counter(data["flow_run_id"] for _, _, data in kind_records(ledger, "flow_run_created"))
    assert max(created.values()) == 1, f"{context}: a flow run recorded as created twice: {created.most_common(3)}"
    lines = Counter(marker.read_text().split())
    for run_id in run_ids:  # a step cut by the kill runs again once; a completed one never
        assert lines[f"{run_id}:publish"] == 1, f"{context}: {run_id}:publish ran {lines[f'{run_id}:publish']}×"
        assert 1 <= lines[f"{run_id}:prepare"] <= 1 + relaunched[run_id], f"{context}: {run_id}:prepare {lines}"

    assert_timers_fired_once(ledger, run_ids, context)
    pages = _ledger_rows(ledger, sa.select(outbox.c.id, outbox.c.attempts, outbox.c.done_at))
    notified = len(kind_records(ledger, "notification"))
    assert all(p.done_at is not None for p in pages), f"{context}: pages never sent: {pages}"
    assert max(p.attempts for p in pages) == 1 and notified == len(pages), \
        f"{context}: {len(pages)} pages queued, {notified} sent; attempts {Counter(p.attempts for p in pages)}"
    assert verified.returncode == 0, f"{context}: {verified.stdout}{verified.stderr}"
    unclean = [f"{p.label} (exit {p.exit_code})" for p in stopped if p.label not in killed and not p.stopped_cleanly]
    assert not unclean, f"{context}: not stopped cleanly by SIGTERM: {unclean}"
    ledger.dispose()

