"""The team's processes started from docs/team.md's commands (bench/team_page.py) on one private PostgreSQL
cluster: :class:`Site` substitutes what names another machine, :class:`Team` starts any number of copies of
each process and stops them with SIGTERM, judging each stop. Used by bench/team_recipe.py, bench/team_waiting_bench.py
and tests/team/.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.team_page import (
    BIN,
    DOCUMENTED_HOME,
    Documented,
    documented_databases,
    documented_environment,
    documented_processes,
)
from tests.postgres import PostgresCluster
from tests.support import free_port

#: what each long-running process says once it is up (its first line), for "started in s"
SAYS_READY = {"executor": "running flow runs", "timers": "timer service", "nudger": "sweeping",
              "pager": "delivering the outbox"}

#: what this machine adds to the page's environment, and why: none of it changes a command
MACHINE_ONLY = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry from a test machine
    "PREFECT_UI_ENABLED": "false",  # nobody looks at the UI here; it only costs start-up time
    "NO_COLOR": "1",
    "COLUMNS": "300",
}


@dataclass
class Site:
    """This machine's answers to what the page leaves to a team: ports, hosts, the project, the secret."""

    root: Path
    pg_port: int
    prefect_port: int = field(default_factory=free_port)
    secret: str = field(default_factory=lambda: secrets.token_hex(16))

    def argv(self, process: Documented, port: int | None = None) -> list[str]:
        """The page's command with this machine's script, host and port (``port``: the API's)."""
        argv = list(process.argv)
        argv[0] = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
        for i, part in enumerate(argv[:-1]):
            if part == "--host" and argv[i + 1] == "0.0.0.0":
                argv[i + 1] = "127.0.0.1"  # a shared test machine listens on loopback only
            if part == "--port":
                argv[i + 1] = str(self.prefect_port if process.role == "Prefect server" else port or free_port())
        return argv

    def text(self, value: str) -> str:
        """A documented value with this machine's hosts, project and secret."""
        return (value.replace("db.internal:5432", f"127.0.0.1:{self.pg_port}")
                .replace("prefect.internal:4200", f"127.0.0.1:{self.prefect_port}")
                .replace(DOCUMENTED_HOME, str(self.root)).replace("CHANGE-ME", self.secret))

    def environment(self) -> dict[str, str]:
        """The page's environment file, substituted, plus :data:`MACHINE_ONLY` and a private Prefect home
        and inbox in the project (nothing written to this account's ~/.prefect)."""
        documented = {name: self.text(value) for name, value in documented_environment().items()}
        return {**os.environ, **documented, **MACHINE_ONLY, "PREFECT_HOME": str(self.root / "var" / "prefect-home"),
                "SOP_INBOX_DIR": str(self.root / "var" / "inbox")}


@dataclass
class Process:
    """A started process of the team: its label (``executor-2``), log, start time and how it ended."""

    label: str
    popen: subprocess.Popen
    log: Path
    began: float
    ready_after: float | None = None
    #: what answers 200 once it is up (an API's /healthz, the Prefect server's /api/health), else its log says so
    url: str | None = None
    stopped_cleanly: bool | None = None
    exit_code: int | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Team:
    """The page's processes on one private cluster: :meth:`databases` (the page's ``createdb``),
    :meth:`prefect_server`, :meth:`run` (``sop deploy``), :meth:`start` (any role, any number of copies),
    :meth:`stop` (SIGTERM to all, then each one's verdict)."""

    def __init__(self, cluster: PostgresCluster, root: Path, logs: Path, *,
                 extra_env: dict[str, str] | None = None):
        self.cluster = cluster
        self.processes = documented_processes()
        self.site = Site(root, cluster.port)
        self.env = {**self.site.environment(), **(extra_env or {})}
        self.logs = logs
        self.started: list[Process] = []
        self._counts: dict[str, int] = {}
        logs.mkdir(parents=True, exist_ok=True)

    @property
    def prefect_api(self) -> str:
        return self.env["PREFECT_API_URL"]

    def databases(self) -> list[str]:
        """Run the page's ``createdb`` lines against the cluster (dropping a database of that name first);
        the names created."""
        names = []
        for argv in documented_databases():
            name = argv[-1]
            self.cluster.drop(name)
            done = subprocess.run([str(self.cluster.bin_dir / "createdb"), "-h", "127.0.0.1", "-p",
                                   str(self.cluster.port), "-U", "sop", *argv[1:]],
                                  capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed: {done.stderr.strip()}")
            names.append(name)
        return names

    def _label(self, role: str) -> str:
        base = {"Prefect server": "prefect", "deployer": "deploy"}.get(role, role.lower())
        self._counts[base] = self._counts.get(base, 0) + 1
        return f"{base}-{self._counts[base]}"

    def start(self, role: str, *, port: int | None = None, args: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> Process:
        """Start one copy of a documented process (its output in ``<logs>/<label>.log``); ``args``: options a
        test adds to the page's command (a faster sweep)."""
        label = self._label(role)
        log = self.logs / f"{label}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen([*self.site.argv(self.processes[role], port), *args], env={**self.env, **(env or {})},
                                     cwd=self.site.root, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        process = Process(label, popen, log, time.monotonic())
        self.started.append(process)
        return process

    def ready(self, *processes: Process, timeout: float = 120) -> None:
        """Wait until each process is up, looking at all at once so that each one's ``ready_after`` is its own:
        an API or the Prefect server answers its health check, the others say so (:data:`SAYS_READY`)."""
        def up(process: Process) -> bool:
            if process.url is not None:
                return answers(process.url)
            return SAYS_READY[process.label.rsplit("-", 1)[0]] in process.tail(100_000)

        waiting = [p for p in processes if p.ready_after is None]
        deadline = time.monotonic() + timeout
        while waiting:
            for process in list(waiting):
                if up(process):
                    process.ready_after = time.monotonic() - process.began
                    waiting.remove(process)
                elif not process.alive():
                    raise RuntimeError(f"{process.label} exited with {process.popen.returncode}:\n{process.tail()}")
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(p.label for p in waiting)} not up within {timeout:.0f} s:\n"
                                   + "\n".join(p.tail(600) for p in waiting))
            time.sleep(0.1)

    def prefect_server(self) -> Process:
        """The page's Prefect server (on the page's Prefect database), once it answers ``/api/health``."""
        server = self.start("Prefect server")
        server.url = f"{self.prefect_api}/health"
        self.ready(server, timeout=180)
        return server

    def run(self, role: str, copies: int = 1) -> list[Process]:
        """Start ``copies`` of a process that ends by itself (``sop deploy``) at once and wait for them to end;
        each is clean when it exits with 0 and logs no traceback."""
        started = [self.start(role) for _ in range(copies)]
        for process in started:
            process.exit_code = process.popen.wait(timeout=300)
            process.ready_after = time.monotonic() - process.began
            process.stopped_cleanly = process.exit_code == 0 and "Traceback" not in process.tail(1_000_000)
        return started

    def api(self) -> Process:
        """One API process on a free port (its base URL is ``api_url(process)``); :meth:`ready` waits for it."""
        port = free_port()
        process = self.start("API", port=port)
        process.url = f"http://127.0.0.1:{port}/healthz"
        return process

    @staticmethod
    def api_url(process: Process) -> str:
        """The base URL of an API process started by :meth:`api`."""
        return (process.url or "").removesuffix("/healthz")

    def stop(self, grace: float = 45.0) -> list[Process]:
        """SIGTERM to every process still running (the Prefect server last), each given ``grace`` seconds
        (then SIGKILL: not clean). Clean: it exited with 0, or of the SIGTERM itself once it had shut down
        (uvicorn, under the API and the Prefect server, raises the signal again after its shutdown, as
        systemd expects), and its log holds no traceback."""
        running = [p for p in self.started if p.exit_code is None]
        server = [p for p in running if p.label.startswith("prefect-")]
        for group in ([p for p in running if p not in server], server):
            for process in group:
                if process.alive():
                    process.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for process in group:
                try:
                    process.exit_code = process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(process.popen.pid, signal.SIGKILL)
                    process.popen.wait(10)
                    process.exit_code = None
                process.stopped_cleanly = (process.exit_code in (0, -signal.SIGTERM)
                                           and "Traceback" not in process.tail(1_000_000))
        return self.started


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; RuntimeError naming ``what`` if it is not in time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
