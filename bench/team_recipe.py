"""docs/team.md followed verbatim on this machine.

The commands are read from the page, never written here: the processes table of "The processes"
(its command column), the ``createdb`` lines of "The databases", and the environment file the page
points every process at (``config/systemd/sop.env.example``). Only what names another machine is
substituted (:class:`Site`): the documented hosts (``db.internal:5432``, ``prefect.internal:4200``,
``0.0.0.0``) by 127.0.0.1 and this machine's free ports, ``/opt/sops-as-code`` by the project,
``CHANGE-ME`` by a fresh secret, the scripts by those of this interpreter's ``.venv/bin``. So the
page cannot drift from what runs: change a command there and this script runs the new one.

``python -m bench.team_recipe`` (about a minute): a private PostgreSQL cluster (tests/postgres.py), the
page's databases on it, every documented process started (the Prefect server on PostgreSQL, ``sop
deploy`` run to its end, then one of each of the others), a run started through the API; it must reach
the ledger on PostgreSQL and its first automated step must run. Then SIGTERM to all, and a table:
process, seconds to start, stopped cleanly. Exit status 1 when any of it fails. The project is a
temporary copy of the repo's ``config/`` with one probe SOP (:data:`PROBE`), so the checkout is untouched.

:class:`Team` is the part tests reuse (tests/team/): they start several copies of each process.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.postgres import PostgresCluster
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "team.md"
ENV_FILE = ROOT / "config" / "systemd" / "sop.env.example"
UNITS = ROOT / "config" / "systemd"
BIN = Path(sys.executable).parent
#: where the page's systemd units expect the checkout
DOCUMENTED_HOME = "/opt/sops-as-code"

#: the roles of the page's processes table, in the order a team starts them
ROLES = ("Prefect server", "deployer", "executor", "timers", "nudger", "pager", "API")

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


class PageError(RuntimeError):
    """docs/team.md (or a file it names) no longer has the shape this recipe reads; the message says where."""


@dataclass(frozen=True)
class Documented:
    """One row of the page's processes table."""

    role: str
    argv: tuple[str, ...]
    at_once: str
    line: int  # where in docs/team.md, for messages


def documented_processes(page: Path = PAGE) -> dict[str, Documented]:
    """The processes table of "## The processes": role → its command (the first code span of the command
    column), split as a shell would. Every role of :data:`ROLES` must be there."""
    lines = page.read_text().splitlines()
    found: dict[str, Documented] = {}
    inside = False
    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            inside = line.strip() == "## The processes"
            continue
        if not inside or not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] == "process":
            continue
        command = re.search(r"`([^`]+)`", cells[1])
        if command is None:
            raise PageError(f"{page}:{number}: the command column of {cells[0]!r} has no `command`")
        found[cells[0]] = Documented(cells[0], tuple(shlex.split(command.group(1))), cells[2], number)
    missing = [role for role in ROLES if role not in found]
    if missing:
        raise PageError(f"{page}: the table of '## The processes' lacks {', '.join(missing)} (has {', '.join(found)})")
    return found


def documented_databases(page: Path = PAGE) -> list[list[str]]:
    """The ``createdb`` commands of the ``sh`` block of "## The databases" (comments dropped). ``createuser``
    is left out: the private cluster's superuser already is the page's ``sop``."""
    text = page.read_text()
    section = text.split("## The databases", 1)[-1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    if block is None:
        raise PageError(f"{page}: '## The databases' has no ```sh block")
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    created = [argv for argv in commands if argv and argv[0] == "createdb"]
    if not created:
        raise PageError(f"{page}: the ```sh block of '## The databases' has no createdb line")
    return created


def documented_environment(path: Path = ENV_FILE) -> dict[str, str]:
    """``NAME=value`` lines of the environment file every unit reads (comments and blanks skipped)."""
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise PageError(f"{path}:{number}: expected NAME=value, got {line!r}")
        env[name.strip()] = value.strip()
    return env


def unit_commands(folder: Path = UNITS) -> dict[str, list[str]]:
    """unit file name → the argv of its ``ExecStart=``."""
    found = {}
    for unit in sorted(folder.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                found[unit.name] = shlex.split(line.removeprefix("ExecStart="))
    return found


def units_disagreeing(processes: dict[str, Documented], folder: Path = UNITS) -> list[str]:
    """Each unit's ``ExecStart`` against the page's command for its process (the unit runs the script from
    ``/opt/sops-as-code/.venv/bin``; ``%i`` is the API's port): what differs, one line each."""
    units = unit_commands(folder)
    unit_of = {"Prefect server": "sop-prefect.service", "deployer": "sop-deploy.service",
               "executor": "sop-executor@.service", "timers": "sop-timers.service", "nudger": "sop-nudger.service",
               "pager": "sop-pager.service", "API": "sop-api@.service"}
    problems = []
    for role, unit in unit_of.items():
        page = list(processes[role].argv)
        if unit not in units:
            problems.append(f"{folder / unit}: missing (the page's {role})")
            continue
        argv = [part.replace("%i", "8000") for part in units[unit]]
        expected = [f"{DOCUMENTED_HOME}/.venv/bin/{page[0]}", *page[1:]]
        if argv != expected:
            problems.append(f"{folder / unit}: ExecStart {shlex.join(argv)!r}, the page says {shlex.join(expected)!r}")
    return problems


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

    def ready(self, process: Process, timeout: float = 120) -> Process:
        """Wait until a long-running process says it is up (:data:`SAYS_READY`)."""
        says = SAYS_READY[process.label.rsplit("-", 1)[0]]
        wait_until(lambda: says in process.tail(100_000), timeout, f"{process.label} to say {says!r}", process)
        return process

    def prefect_server(self) -> Process:
        """The page's Prefect server (on the page's Prefect database), once it answers ``/api/health``."""
        server = self.start("Prefect server")
        wait_until(lambda: _answers(f"{self.prefect_api}/health"), 180, "the Prefect server", server)
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

    def api(self) -> tuple[Process, str]:
        """One API process on a free port; its base URL once ``/healthz`` answers."""
        port = free_port()
        process = self.start("API", port=port)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), 120, f"the API on {url}", process)
        return process, url

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


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, what: str, process: Process | None = None,
               interval: float = 0.2) -> None:
    """Poll ``predicate`` until true; RuntimeError naming ``what`` (and the process's log) if it is not in time
    or the process exits first. The process's ``ready_after`` is set when it is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and not process.alive():
            raise RuntimeError(f"{what}: {process.label} exited with {process.popen.returncode}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s" + (f"\n{process.tail()}" if process else ""))
        time.sleep(interval)
    if process is not None and process.ready_after is None:
        process.ready_after = time.monotonic() - process.began


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
        unlocked = _answers(f"{team.prefect_api}/admin/version")
        if unlocked:
            raise RuntimeError(f"the Prefect server started as the page says answers without its auth string "
                               f"({team.prefect_api}/admin/version): anyone reaching it can act on flow runs")
        others = [team.start(role) for role in ("executor", "timers", "nudger", "pager")]
        _, url = team.api()
        for process in others:
            team.ready(process)
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
