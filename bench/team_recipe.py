"""docs/team.md followed verbatim on this machine.

The commands are read from the page, never written here (bench/team_page.py): the processes table of
"The processes" (its command column), the ``createdb`` lines of "The databases", and the environment
file the page points every process at (``config/systemd/sop.env.example``). Only what names another
machine is substituted (bench/team_processes.py, ``Site``): the documented hosts (``db.internal:5432``, ``prefect.internal:4200``,
``0.0.0.0``) by 127.0.0.1 and this machine's free ports, ``/opt/sops-as-code`` by the project,
``CHANGE-ME`` by a fresh secret, the scripts by those of this interpreter's ``.venv/bin``. So the
page cannot drift from what runs: change a command there and this script runs the new one.

``python -m bench.team_recipe`` (about 20 s): a private PostgreSQL cluster (tests/postgres.py), the
page's databases on it, every documented process started (the Prefect server on PostgreSQL, ``sop
deploy`` run to its end, then one of each of the others), a run started through the API; it must reach
the ledger on PostgreSQL and its first automated step must run. Then SIGTERM to all, and a table:
process, seconds to start, stopped cleanly. Exit status 1 when any of it fails. The project is a
temporary copy of the repo's ``config/`` with one probe SOP (:data:`PROBE`), so the checkout is untouched.

tests/team/test_team_page.py runs it; tests/team/test_two_of_everything.py starts two of each process with
the same ``Team``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.team_page import ROOT, PageError, documented_processes, units_disagreeing
from bench.team_processes import Process, Team, answers, wait_until
from tests.postgres import PostgresCluster

#: the recipe's probe: a run whose first step is automated, then a person
PROBE = """\
id: team-probe
title: Team recipe probe
class: routine
owner: growth-lead
steps:
  - id: first
    kind: command
    command: ["sh", "-c", "echo first"]
    timeout: 30s
  - id: confirm
    needs: [first]
    assignee: growth-lead
    due: 1h
"""


def probe_project(target: Path) -> Path:
    """A project: the repo's ``config/`` and the recipe's probe SOP only."""
    shutil.copytree(ROOT / "config", target / "config")
    (target / "sops").mkdir(parents=True)
    (target / "sops" / "team-probe.yaml").write_text(PROBE)
    (target / "var").mkdir()
    return target


def follow(cluster: PostgresCluster, work: Path, say: Callable[[str], None] = print) -> tuple[list[Process], str | None]:
    """The whole page on ``cluster``, in ``work``: every process started from its command, a run through the API
    reaching the ledger and its first automated step, then SIGTERM to all. The processes started, with their
    verdicts, and what failed (None: nothing); the processes are stopped either way."""
    import psycopg

    try:
        problems = units_disagreeing(documented_processes())
        if problems:
            raise PageError("the systemd units and docs/team.md disagree:\n" + "\n".join(problems))
        root = probe_project(work / "site")
        token = secrets.token_hex(16)
        team = Team(cluster, root, work / "logs", extra_env={"SOP_TOKEN_OPERATOR": token})
    except (RuntimeError, OSError) as exc:  # PageError too
        return [], str(exc)
    error = None
    try:
        databases = team.databases()
        say(f"databases {', '.join(databases)} created with the page's createdb lines")
        team.prefect_server()
        [deploy] = team.run("deployer")
        if deploy.exit_code != 0:
            raise RuntimeError(f"sop deploy exited with {deploy.exit_code}:\n{deploy.tail()}")
        unlocked = answers(f"{team.prefect_api}/admin/version")
        if unlocked:
            raise RuntimeError(f"the Prefect server started as the page says answers without its auth string "
                               f"({team.prefect_api}/admin/version): anyone reaching it can act on flow runs")
        others = [team.start(role) for role in ("executor", "timers", "nudger", "pager")]
        api = team.api()
        team.ready(*others, api)
        url = team.api_url(api)
        answer = httpx.post(f"{url}/v1/runs", headers={"Authorization": f"Bearer {token}"},
                            json={"sop": "team-probe"}, timeout=60)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /v1/runs answered {answer.status_code}: {answer.text}")
        run_id = answer.json()["run"]
        ledger = team.env["SOP_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

        def first_step_done() -> bool:
            with psycopg.connect(ledger) as conn:
                row = conn.execute("SELECT state FROM steps WHERE run_id = %s AND step_id = 'first'",
                                   (run_id,)).fetchone()
            return row is not None and row[0] == "done"

        wait_until(first_step_done, 90, f"run {run_id}'s first automated step to be done in the ledger")
        for process in others:
            if not process.alive():
                raise RuntimeError(f"{process.label} exited with {process.popen.returncode}:\n{process.tail()}")
        say(f"run {run_id} started through the API is in the ledger on PostgreSQL; its first automated step ran")
    except (RuntimeError, OSError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        error = str(exc)
    finally:
        stopped = team.stop()
    return stopped, error


def table(processes: list[Process]) -> str:
    """process | started in s | stopped cleanly, one line each."""
    rows = [f"{'process':<12} {'started in s':>12}  stopped cleanly"]
    for p in processes:
        started = f"{p.ready_after:.1f}" if p.ready_after is not None else "-"
        verdict = "yes" if p.stopped_cleanly else f"NO (exit {p.exit_code}; {p.log})"
        rows.append(f"{p.label:<12} {started:>12}  {verdict}")
    return "\n".join(rows)


def main() -> None:
    cluster = PostgresCluster().start()
    work = Path(tempfile.mkdtemp(prefix="sop-team-"))
    try:
        processes, error = follow(cluster, work)
    finally:
        cluster.stop()
    if processes:
        print(table(processes))
    print(f"logs in {work / 'logs'}")
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
    if error is not None or not all(p.stopped_cleanly for p in processes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
