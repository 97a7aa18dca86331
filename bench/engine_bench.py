"""The engine on a real stack: escalation lateness, overhead against plain Prefect, cost of waiting runs.

One command, one temporary project (the repo's ``sops/`` and ``config/`` plus three bench
SOPs that live only there), one Prefect server of its own on a free port (or
``$PREFECT_API_URL``), one work pool of its own, and ``sop serve`` as a child process — the
shape of a real single-machine install: server, serve process (timer service + nudger
threads), Prefect process worker(s), one flow-run process per running flow run.

1. **Escalation lateness.** ``bench-escalate`` has one human step (due 10m) with a ladder
   at 50% and 100% and two repeats every 5m; runs start at ``--speed`` 100 (10m = 6 s), so
   each run arms 5 timers (4 ladder levels + the step's deadline) over 12 s while the
   worker starts their flow runs. Lateness = ``timers.fired_at − timers.due_at``; none may
   fire before ``due_at``; the ``escalation`` / ``step_overdue`` records must carry the same
   ``due_at`` and be written at the firing. A second row stops ``sop serve`` (timer
   service and workers), starts runs while it is down, lets their timers come due,
   restarts it and measures the catch-up (those firings are marked ``late``).
2. **Overhead.** ``bench-chain5`` (five chained ``http`` GETs against a loopback endpoint
   in another process), started by our engine (ledger + launcher), against a hand-written
   Prefect flow of five chained ``@task`` GETs deployed to the same pool and queue with the
   same job variables, started with ``run_deployment``. Same server, same worker, warm (one
   warm-up each), alternating, ``REPS`` pairs. End to end = from the call until the flow
   run's ``end_time`` (server side); the figure is the median of the per-pair ratios (a
   pair runs back to back, so the machine's drifting load cancels out), the ratio of the
   medians is shown too, and so is the flow body alone (Running → Completed).
3. **Waiting runs.** ``bench-wait`` starts with a human step: ``WAITING`` runs are started;
   each flow run assigns, suspends and ends its process. Processes of the whole service
   (server, serve, workers, flow-run processes, from ``/proc``) and their RSS/PSS before,
   at the peak and after every flow run is Suspended.

``python -m bench engine`` or ``make bench BENCH=engine`` (≈15–20 min on 2 busy cores, most of
it the 200 flow runs starting and suspending; see docs/benchmarks.md). Knobs: ``BENCH_ENGINE_WAITING`` (200),
``BENCH_ENGINE_ESCALATE`` (20 runs = 100 timers), ``BENCH_ENGINE_RESTART`` (12 runs),
``BENCH_ENGINE_REPS`` (7), ``BENCH_ENGINE_SPEED`` (100), ``BENCH_ENGINE_KEEP=1`` keeps the
temporary project (logs in ``var/log``). Writes ``bench/out/engine.json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flows.prefect import server as prefect_server
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "engine.json"

WAITING = int(os.environ.get("BENCH_ENGINE_WAITING", "200"))
ESCALATE = int(os.environ.get("BENCH_ENGINE_ESCALATE", "20"))
RESTART = int(os.environ.get("BENCH_ENGINE_RESTART", "12"))
REPS = int(os.environ.get("BENCH_ENGINE_REPS", "7"))
SPEED = float(os.environ.get("BENCH_ENGINE_SPEED", "100"))
KEEP = os.environ.get("BENCH_ENGINE_KEEP", "") not in ("", "0")
#: the Prefect server as Prefect ships it (``prefect server start``), not as ``sop serve`` starts it
AS_SHIPPED = os.environ.get("BENCH_PREFECT_AS_SHIPPED", "") not in ("", "0")

GOAL_LATE_P99_S = 1.0
GOAL_RATIO = 1.2

console = Console()


def say(text: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')} engine:[/] {text}")


# --- the bench SOPs (written into the temporary project only) ---------------------------------

ESCALATE_SOP = """\
id: bench-escalate
title: Bench - escalation ladder timers
version: 1
class: outage
owner: sre-lead
escalation:
  - at: 50%
    notify: [assignee]
  - at: 100%
    notify: [lead]
  - every: 5m
    notify: [owner]
    max: 2
steps:
  - id: ack
    title: Acknowledge the page
    assignee: sre-oncall
    due: 10m
"""
TIMERS_PER_ESCALATE_RUN = 5  # levels 1, 2, 3.1, 3.2 and the step's `due`

WAIT_SOP = """\
id: bench-wait
title: Bench - a run that waits on a person
version: 1
class: routine
owner: sre-lead
escalation: []
steps:
  - id: decide
    title: Decide
    assignee: sre-oncall
    due: 2d
  - id: record
    kind: http
    needs: [decide]
    request: {method: GET, url: "{url}/wait/after"}
"""

CHAIN_STEP = """\
  - id: call-{n}
    kind: http
    title: GET step {n}
{needs}    request: {{method: GET, url: "{url}/chain/{n}"}}
"""

HAND_FLOW = '''\
"""The hand-written Prefect flow the engine is compared with: five chained GETs, as tasks."""

import httpx
from prefect import flow, task


@task
def call(url: str, n: int, previous: int | None) -> int:
    with httpx.Client(timeout=30.0) as client:
        response = client.get(f"{url}/chain/{n}")
    response.raise_for_status()
    return response.status_code


@flow(name="bench-hand-chain5")
def chain5(url: str) -> list[int]:
    statuses: list[int] = []
    previous = None
    for n in range(1, 6):
        previous = call.submit(url, n, previous).result()
        statuses.append(previous)
    return statuses
'''


def chain_sop(url: str) -> str:
    steps = "".join(CHAIN_STEP.format(n=n, url=url, needs=f"    needs: [call-{n - 1}]\n" if n > 1 else "")
                    for n in range(1, 6))
    return ("id: bench-chain5\ntitle: Bench - five chained http steps\nversion: 1\nclass: routine\n"
            f"owner: sre-lead\nsteps:\n{steps}")


def make_project(target: Path, url: str) -> None:
    shutil.copytree(ROOT / "sops", target / "sops")
    shutil.copytree(ROOT / "config", target / "config")
    (target / "sops" / "bench-escalate.yaml").write_text(ESCALATE_SOP)
    (target / "sops" / "bench-wait.yaml").write_text(WAIT_SOP.replace("{url}", url))
    (target / "sops" / "bench-chain5.yaml").write_text(chain_sop(url))
    (target / "bench_handflow.py").write_text(HAND_FLOW)


# --- a loopback endpoint in its own process ----------------------------------------------------

def _serve_endpoint(pipe: Connection) -> None:
    """Answers every GET with 200 and counts them; ``/count`` says how many. ``/mark/<key>/<t>`` keeps ``t``
    (a task's own clock reading) under ``key``, ``/marks`` answers them all as JSON."""
    count = 0
    marks: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            nonlocal count
            if self.path == "/count":
                body = str(count).encode()
            elif self.path == "/marks":
                with lock:
                    body = json.dumps(marks).encode()
            else:
                with lock:
                    count += 1
                    if self.path.startswith("/mark/"):
                        _, _, key, at = self.path.split("/", 3)
                        marks[key] = float(at)
                body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    pipe.send(server.server_port)
    server.serve_forever()


def endpoint_count(url: str) -> int:
    import httpx

    return int(httpx.get(f"{url}/count", timeout=5).text)


def endpoint_marks(url: str) -> dict[str, float]:
    """What tasks marked on the endpoint (``/mark/<key>/<t>``): key → their clock (``time.time()``)."""
    import httpx

    return httpx.get(f"{url}/marks", timeout=5).json()


# --- processes, from /proc ----------------------------------------------------------------------

@dataclass
class Proc:
    pid: int
    ppid: int
    role: str
    rss_kib: int
    pss_kib: int | None
    cmd: str


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        out[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def service_processes(server_pid: int | None, serve_pid: int | None, pss: bool = False) -> list[Proc]:
    """Every process of the service: the Prefect server's tree, the serve process, its workers
    and their flow-run processes (children of a worker), each with a role."""
    ppids = _ppids()
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            if p in ppids:
                out.append(p)
                todo.extend(children.get(p, []))
        return out

    procs: list[Proc] = []

    def add(pid: int, role: str) -> None:
        procs.append(Proc(pid, ppids.get(pid, 0), role, _rss(pid), _pss(pid) if pss else None, _cmd(pid)[:160]))

    if server_pid:
        for pid in tree(server_pid):
            add(pid, "prefect-server")
    if serve_pid and serve_pid in ppids:
        add(serve_pid, "sop-serve")
        for child in children.get(serve_pid, []):
            cmd = _cmd(child)
            is_worker = "worker" in cmd
            add(child, "prefect-worker" if is_worker else "executor" if " executor" in cmd
                else "pager" if " pager" in cmd else "serve-child")
            for pid in tree(child)[1:]:
                add(pid, "flow-run" if is_worker and ppids.get(pid) == child else "flow-run-child")
    return procs


def summarize(procs: list[Proc]) -> dict[str, Any]:
    roles = Counter(p.role for p in procs)
    pss = [p.pss_kib for p in procs if p.pss_kib is not None]
    return {
        "processes": len(procs),
        "by_role": dict(sorted(roles.items())),
        "flow_run_processes": roles.get("flow-run", 0),
        "rss_mib": round(sum(p.rss_kib for p in procs) / 1024, 1),
        "pss_mib": round(sum(pss) / 1024, 1) if pss else None,
        "rss_mib_by_role": {r: round(sum(p.rss_kib for p in procs if p.role == r) / 1024, 1) for r in sorted(roles)},
    }


class Sampler(threading.Thread):
    """Samples the service's processes every ``every`` seconds; keeps the peak."""

    def __init__(self, bench: Bench, every: float = 0.5):
        super().__init__(name="sampler", daemon=True)
        self.bench, self.every = bench, every
        self.stop = threading.Event()
        self.peak_processes = 0
        self.peak_flow_runs = 0
        self.peak_rss_mib = 0.0
        self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(self.every):
            summary = summarize(self.bench.processes())
            self.samples += 1
            self.peak_processes = max(self.peak_processes, summary["processes"])
            self.peak_flow_runs = max(self.peak_flow_runs, summary["flow_run_processes"])
            self.peak_rss_mib = max(self.peak_rss_mib, summary["rss_mib"])


# --- machine noise -------------------------------------------------------------------------------

def cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def locked_errors(server_log: Path | None) -> int:
    """How many times the Prefect server has logged SQLite's "database is locked" so far."""
    if server_log is None or not server_log.exists():
        return 0
    return server_log.read_bytes().count(b"database is locked")


@dataclass
class Noise:
    """Machine load over one phase: 1-min load average at its end, share of both cores busy, and
    the Prefect server's "database is locked" errors (SQLite saturated) during the phase."""

    server_log: Path | None = None
    start: tuple[int, int] = field(default_factory=cpu_ticks)
    locked: int = 0

    def __post_init__(self) -> None:
        self.locked = locked_errors(self.server_log)

    def end(self) -> dict[str, Any]:
        busy, total = cpu_ticks()
        share = (busy - self.start[0]) / max(1, total - self.start[1])
        return {"cpu_busy_pct": round(100 * share, 1), "loadavg_1m": float(Path("/proc/loadavg").read_text().split()[0]),
                "prefect_db_locked_errors": locked_errors(self.server_log) - self.locked}


def other_python_processes(ours: set[int]) -> list[str]:
    """Python processes on the machine that are not ours (other people's tests), for the report."""
    ppids = _ppids()
    mine = {os.getpid()}
    for _ in range(6):  # the bench's own children (endpoint, resource tracker) and theirs
        mine |= {pid for pid, ppid in ppids.items() if ppid in mine}
    out = []
    for pid in ppids:
        if pid in ours or pid in mine:
            continue
        cmd = _cmd(pid)
        if "python" in cmd.split(" ")[0]:
            out.append(cmd[:100])
    return out


# --- statistics -----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p99": round(percentile(values, 99), 3),
            "max": round(max(values), 3), "min": round(min(values), 3)}


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)




# --- the bench -----------------------------------------------------------------------------------

class Bench:
    def __init__(self, root: Path):
        self.root = root
        self.pool = f"bench-engine-{os.getpid()}"
        self.api_port = free_port()  # the HTTP API of `sop serve`, off the default port other stacks use
        self.server: subprocess.Popen | None = None
        self.serve: subprocess.Popen | None = None
        self.api_url = os.environ.get("PREFECT_API_URL") or ""
        self.external_server = bool(self.api_url)
        self.endpoint: multiprocessing.Process | None = None
        self.url = ""
        self.engine: Any = None
        self.launch_s: list[float] = []
        #: the work pool the hand-written flow is deployed to: a pool of its own, served by Prefect's process worker
        #: as Prefect ships it (``pool`` is served by `sop serve`'s executor, which runs SOP flows only)
        self.hand_pool = f"bench-hand-{os.getpid()}"
        self.hand_worker: subprocess.Popen | None = None

    # lifecycle --------------------------------------------------------------------------------

    def logs(self) -> Path:
        path = self.root / "var" / "log"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_endpoint(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.endpoint = ctx.Process(target=_serve_endpoint, args=(child,), daemon=True)
        self.endpoint.start()
        self.url = f"http://127.0.0.1:{parent.recv()}"

    def env(self) -> dict[str, str]:
        return {
            "SOP_HOME": str(self.root),
            "SOP_DATABASE_URL": f"sqlite:///{self.root / 'var' / 'ledger.db'}",
            "SOP_INBOX_DIR": str(self.root / "var" / "inbox"),
            "SOP_PREFECT_POOL": self.pool,
            "SOP_API_PORT": str(self.api_port),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def start_server(self) -> float:
        from flows.runtime.serve import _die_with_parent, healthy, prefect_env

        if self.external_server:
            say(f"using the Prefect server at {self.api_url} (its processes are not counted)")
            return 0.0
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        db = self.root / "var" / "prefect" / "prefect.db"
        env = {**os.environ, **prefect_env(self.root, None),
               "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}"}
        env.pop("PREFECT_API_URL", None)
        say(f"starting a Prefect server on 127.0.0.1:{port} (fresh SQLite database)")
        t0 = time.monotonic()
        out = open(self.logs() / "prefect-server.log", "ab")  # noqa: SIM115 - the child owns it
        self.server = subprocess.Popen(prefect_server.command("127.0.0.1", port, as_shipped=AS_SHIPPED), env=env,
                                       stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
                                       preexec_fn=_die_with_parent)
        while not healthy(self.api_url):
            if self.server.poll() is not None or time.monotonic() - t0 > 180:
                raise SystemExit(f"the Prefect server did not start; see {self.logs() / 'prefect-server.log'}")
            time.sleep(0.25)
        return time.monotonic() - t0

    def start_serve(self) -> float:
        """``sop serve`` as a child (workers, timer service, nudger); seconds until it says ready."""
        from flows.runtime.serve import _die_with_parent

        log = self.logs() / "sop-serve.log"
        offset = log.stat().st_size if log.exists() else 0
        out = open(log, "ab")  # noqa: SIM115 - the child owns it
        t0 = time.monotonic()
        self.serve = subprocess.Popen([sys.executable, "-m", "flows", "serve"], env={**os.environ, **self.env()},
                                      stdout=out, stderr=subprocess.STDOUT, cwd=self.root, preexec_fn=_die_with_parent)
        while True:
            text = log.read_bytes()[offset:].decode(errors="replace")
            if "serving" in text:
                return time.monotonic() - t0
            if self.serve.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit(f"sop serve did not start; see {log}:\n{text[-2000:]}")
            time.sleep(0.1)

    def stop_serve(self) -> float:
        assert self.serve is not None
        t0 = time.monotonic()
        self.serve.send_signal(signal.SIGTERM)
        try:
            self.serve.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.serve.pid, signal.SIGKILL)
            self.serve.wait(timeout=10)
        self.serve = None
        return time.monotonic() - t0

    def start_hand_worker(self) -> None:
        """``hand_pool`` (the queues and concurrency of ours) and Prefect's process worker serving it, once; returns
        when the worker has registered with the server."""
        from flows.prefect.deployments import ensure_pool
        from flows.runtime.serve import _die_with_parent, prefect_env

        if self.hand_worker is not None:
            return
        with self.client() as client:
            ensure_pool(client, self.engine.site.settings.prefect.concurrency, self.hand_pool)
        out = open(self.logs() / "plain-worker.log", "ab")  # noqa: SIM115 - the child owns it
        env = {**os.environ, **prefect_env(self.root, self.api_url)}  # the poll settings `sop serve` gave its worker
        self.hand_worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.hand_pool, "--type", "process",
             "--name", f"plain-{os.getpid()}"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
            preexec_fn=_die_with_parent)
        with self.client() as client:
            deadline = time.monotonic() + 120
            while not client.read_workers_for_work_pool(self.hand_pool):
                if self.hand_worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Prefect's process worker did not start; see {self.logs() / 'plain-worker.log'}")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.hand_worker is not None and self.hand_worker.poll() is None:
            os.killpg(self.hand_worker.pid, signal.SIGTERM)
            try:
                self.hand_worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.hand_worker.pid, signal.SIGKILL)
        if self.serve is not None and self.serve.poll() is None:
            self.stop_serve()
        if self.engine is not None and self.engine.pager is not None:
            self.engine.pager.close()
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
        if self.endpoint is not None:
            self.endpoint.terminate()

    def processes(self, pss: bool = False) -> list[Proc]:
        return service_processes(self.server.pid if self.server else None, self.serve.pid if self.serve else None, pss)

    def server_log(self) -> Path | None:
        return None if self.external_server else self.logs() / "prefect-server.log"

    def client(self) -> Any:
        from flows.prefect.launcher import prefect_client

        return prefect_client(self.api_url)

    def settings(self) -> Any:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api_url})

    # helpers -----------------------------------------------------------------------------------

    def make_engine(self) -> None:
        """The engine a CLI or API process would use; its launches are timed."""
        from flows import runtime

        self.engine = runtime.engine(self.root)
        launch = self.engine.launcher.launch

        def timed(run_id: str) -> str:
            t0 = time.perf_counter()
            try:
                return launch(run_id)
            finally:
                self.launch_s.append(time.perf_counter() - t0)

        self.engine.launcher.launch = timed

    def start_runs(self, sop_id: str, n: int, speed: float | None = None) -> tuple[list[str], dict[str, Any]]:
        """Start ``n`` runs one after another (as a burst of ``sop run``); ids and the cost of a start."""
        ids, took = [], []
        first = len(self.launch_s)
        t0 = time.monotonic()
        for i in range(n):
            t = time.perf_counter()
            ids.append(self.engine.start(sop_id, {}, initiator="bench", trigger={"kind": "bench", "n": i},
                                         speed=speed).run_id)
            took.append(time.perf_counter() - t)
        return ids, {"runs": n, "total_s": round(time.monotonic() - t0, 2), "start_s": dist(took),
                     "of_which_launch_s": dist(self.launch_s[first:])}

    def flow_run_ids(self, run_ids: list[str]) -> dict[str, str | None]:
        import sqlalchemy as sa

        from flows.ledger.schema import runs

        with self.engine.ledger.read() as conn:
            rows = conn.execute(sa.select(runs.c.id, runs.c.flow_run_id).where(runs.c.id.in_(run_ids)))
            return {r.id: r.flow_run_id for r in rows}

    def wait_final(self, client: Any, flow_run_id: Any, timeout: float = 180.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            if time.monotonic() > deadline:
                raise SystemExit(f"flow run {flow_run_id} not final after {timeout:.0f}s: {flow_run.state}")
            time.sleep(0.1)

    def deployment_states(self, client: Any, deployment_id: Any, limit: int) -> Counter:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

        states: Counter = Counter()
        offset = 0
        while offset < limit:  # the server answers at most 200 flow runs a call
            page = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])), limit=200, offset=offset)
            states.update(r.state.name if r.state else "none" for r in page)
            if len(page) < 200:
                break
            offset += 200
        return states

    # 2. overhead against a hand-written Prefect flow ----------------------------------------------

    def deploy_hand_flow(self, client: Any, ours: Any) -> Any:
        import importlib.util

        from prefect.deployments import run_deployment  # noqa: F401 - fail early if missing

        from flows.prefect.deployments import parameter_schema

        spec = importlib.util.spec_from_file_location("bench_handflow", self.root / "bench_handflow.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        theirs = client.read_deployment(ours)
        self.start_hand_worker()
        flow_id = client.create_flow_from_name("bench-hand-chain5")
        return client.create_deployment(
            flow_id=flow_id, name=f"bench-hand-chain5@{self.hand_pool}", work_pool_name=self.hand_pool,
            work_queue_name=theirs.work_queue_name, entrypoint="bench_handflow.py:chain5", path=str(self.root),
            parameter_openapi_schema=parameter_schema(module.chain5), enforce_parameter_schema=True,
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(self.root)}}],
            job_variables=theirs.job_variables)

    def overhead(self, reps: int = REPS) -> dict[str, Any]:
        from prefect.deployments import run_deployment

        noise = Noise(self.server_log())
        with self.client() as client:
            ours_id = self.engine.launcher.deployment_id(client, "bench-chain5")
            hand_id = self.deploy_hand_flow(client, ours_id)

            def ours() -> dict[str, Any]:
                t0 = datetime.now(UTC)
                run_id = self.engine.start("bench-chain5", {}, initiator="bench", trigger={"kind": "bench"}).run_id
                created = datetime.now(UTC)
                flow_run = self.wait_final(client, self.flow_run_ids([run_id])[run_id])
                view = self.engine.view(run_id)
                if view.run["outcome"] != "done" or flow_run.state.name != "Completed":
                    raise SystemExit(f"bench-chain5 run {run_id}: {view.run['outcome']} / {flow_run.state}")
                return self._timing(t0, created, flow_run, ledger=(utc(view.run["started_at"]), utc(view.run["finished_at"])))

            def hand() -> dict[str, Any]:
                t0 = datetime.now(UTC)
                with self.settings():
                    flow_run = run_deployment(hand_id, parameters={"url": self.url}, timeout=0, as_subflow=False)
                created = datetime.now(UTC)
                flow_run = self.wait_final(client, flow_run.id)
                if flow_run.state.name != "Completed":
                    raise SystemExit(f"hand-written flow run {flow_run.id}: {flow_run.state}")
                return self._timing(t0, created, flow_run)

            before = endpoint_count(self.url)
            say("overhead: warm-up (one run of each)")
            ours(), hand()
            rows: dict[str, list[dict[str, Any]]] = {"ours": [], "hand": []}
            for rep in range(reps):
                order = [("ours", ours), ("hand", hand)] if rep % 2 == 0 else [("hand", hand), ("ours", ours)]
                for name, fn in order:
                    rows[name].append(fn())
                o, h = rows["ours"][-1], rows["hand"][-1]
                say(f"overhead: rep {rep + 1}/{reps} ({order[0][0]} first): ours {o['e2e_s']:.2f}s "
                    f"(pickup {o['pickup_s']:.2f}, body {o['body_s']:.2f}), hand-written {h['e2e_s']:.2f}s "
                    f"(pickup {h['pickup_s']:.2f}, body {h['body_s']:.2f})")
            calls = endpoint_count(self.url) - before
        expected = 5 * 2 * (reps + 1)
        out: dict[str, Any] = {"reps": reps, "endpoint_calls": calls, "endpoint_calls_expected": expected}
        for name, items in rows.items():
            out[name] = {key: round(statistics.median(r[key] for r in items), 3) for key in items[0] if key.endswith("_s")}
            out[name]["e2e_all_s"] = [round(r["e2e_s"], 3) for r in items]
        out["ratio_of_medians"] = round(out["ours"]["e2e_s"] / out["hand"]["e2e_s"], 3)
        out["pair_ratios"] = [round(a["e2e_s"] / b["e2e_s"], 3) for a, b in zip(rows["ours"], rows["hand"], strict=True)]
        out["ratio_median_of_pairs"] = round(statistics.median(out["pair_ratios"]), 3)
        out["body_ratio"] = round(out["ours"]["body_s"] / out["hand"]["body_s"], 3)
        out["noise"] = noise.end()
        return out

    @staticmethod
    def _timing(t0: datetime, created: datetime, flow_run: Any, ledger: tuple[Any, Any] | None = None) -> dict[str, Any]:
        start, end = utc(flow_run.start_time), utc(flow_run.end_time)
        out = {
            "e2e_s": (end - t0).total_seconds(),                    # call → flow run end (server time)
            "create_s": (created - t0).total_seconds(),             # the call itself (ours: ledger + launch)
            "pickup_s": (start - created).total_seconds(),          # → worker starts a process, flow loaded, Running
            "body_s": (end - start).total_seconds(),                # Running → Completed (the five steps)
        }
        if ledger is not None:
            out["ledger_run_s"] = (ledger[1] - ledger[0]).total_seconds()
        return out

    # 3. processes and memory with runs waiting on a person ------------------------------------

    def waiting_runs(self) -> dict[str, Any]:
        noise = Noise(self.server_log())
        time.sleep(2)
        before = summarize(self.processes(pss=True))
        sampler = Sampler(self)
        sampler.start()
        t0 = time.monotonic()
        ids, starts = self.start_runs("bench-wait", WAITING)
        say(f"waiting runs: {WAITING} started in {starts['total_s']:.1f}s; waiting for every flow run to suspend")
        with self.client() as client:
            deployment_id = self.engine.launcher.deployment_id(client, "bench-wait")
            last = None
            while True:
                states = self.deployment_states(client, deployment_id, WAITING + 50)
                if states != last:
                    say(f"waiting runs: flow runs {dict(states)}")
                    last = states
                if states.get("Suspended", 0) >= WAITING:
                    break
                if time.monotonic() - t0 > 1800:
                    raise SystemExit(f"flow runs did not all suspend in 30 min: {dict(states)}")
                time.sleep(2)
        settle_s = time.monotonic() - t0
        time.sleep(3)
        sampler.stop.set()
        sampler.join()
        after = summarize(self.processes(pss=True))
        with self.engine.ledger.read() as conn:
            import sqlalchemy as sa

            from flows.ledger.schema import steps

            active = conn.execute(sa.select(sa.func.count()).select_from(steps).where(
                steps.c.run_id.in_(ids) & (steps.c.step_id == "decide") & (steps.c.state == "active"))).scalar_one()
        return {"runs": WAITING, "starts": starts, "all_suspended_after_s": round(settle_s, 1),
                "flow_run_states": dict(states), "steps_active_in_ledger": active,
                "before": before, "after": after,
                "peak": {"processes": sampler.peak_processes, "flow_run_processes": sampler.peak_flow_runs,
                         "rss_mib": sampler.peak_rss_mib, "samples": sampler.samples},
                "noise": noise.end()}

    # 1. escalation lateness -----------------------------------------------------------------------

    def wait_timers(self, ids: list[str], timeout: float) -> None:
        import sqlalchemy as sa

        from flows.ledger.schema import timers

        deadline = time.monotonic() + timeout
        want = TIMERS_PER_ESCALATE_RUN * len(ids)
        while True:
            with self.engine.ledger.read() as conn:
                fired = conn.execute(sa.select(sa.func.count()).select_from(timers).where(
                    timers.c.run_id.in_(ids) & timers.c.fired_at.is_not(None))).scalar_one()
            if fired >= want:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"only {fired} of {want} timers fired in {timeout:.0f}s")
            time.sleep(0.5)

    def timer_report(self, ids: list[str], since: datetime | None = None) -> dict[str, Any]:
        """Lateness from the timers table, checked against the ledger records of the firings."""
        import sqlalchemy as sa

        from flows.ledger.schema import records, timers

        with self.engine.ledger.read() as conn:
            rows = list(conn.execute(sa.select(timers).where(timers.c.run_id.in_(ids))))
            recs = list(conn.execute(sa.select(records).where(
                records.c.run_id.in_(ids) & records.c.kind.in_(["escalation", "step_overdue"]))))
        by_key = {}
        for r in recs:
            data = json.loads(r.data)
            key = (r.run_id, r.step_id, "ladder", data["level"]) if r.kind == "escalation" else (r.run_id, r.step_id, "due", "")
            by_key[key] = (utc(r.at), datetime.fromisoformat(data["due_at"]), bool(data.get("late")), data.get("late_ms"))
        late_s, early, unmatched, due_mismatch, record_gap_ms, marked_late, fired_by = [], 0, 0, 0, [], 0, Counter()
        catch_up_s, on_time_s = [], []
        for t in rows:
            if t.fired_at is None:
                continue
            due, fired = utc(t.due_at), utc(t.fired_at)
            lateness = (fired - due).total_seconds()
            late_s.append(lateness)
            early += lateness < 0
            fired_by[t.fired_by] += 1
            rec = by_key.get((t.run_id, t.step_id, t.kind, t.level))
            if rec is None:
                unmatched += 1
            else:
                record_gap_ms.append((rec[0] - fired).total_seconds() * 1000)
                due_mismatch += abs((rec[1] - due).total_seconds()) > 0.001
                marked_late += rec[2]
            if since is not None:
                (catch_up_s if due < since else on_time_s).append(
                    (fired - since).total_seconds() if due < since else lateness)
        out = {"runs": len(ids), "timers_armed": len(rows), "timers_fired": len(late_s), "late_s": dist(late_s),
               "fired_early": early, "records_matched": len(late_s) - unmatched, "records_missing": unmatched,
               "records_due_at_mismatch": due_mismatch, "record_minus_fired_ms": dist(record_gap_ms),
               "marked_late_in_ledger": marked_late, "fired_by": dict(fired_by)}
        if since is not None:
            out["due_while_down"] = len(catch_up_s)
            out["fired_after_restart_s"] = dist(catch_up_s)
            out["due_after_restart_late_s"] = dist(on_time_s)
        return out

    def escalation(self) -> dict[str, Any]:
        noise = Noise(self.server_log())
        ids, starts = self.start_runs("bench-escalate", ESCALATE, SPEED)
        say(f"escalation: {ESCALATE} runs started in {starts['total_s']:.1f}s at speed {SPEED:g}; "
            f"{TIMERS_PER_ESCALATE_RUN * ESCALATE} timers to fire")
        self.wait_timers(ids, timeout=120 + 1200 / SPEED * 3)
        out = self.timer_report(ids)
        out["speed"] = SPEED
        out["starts"] = starts
        out["noise"] = noise.end()
        return out

    def restart(self) -> dict[str, Any]:
        noise = Noise(self.server_log())
        say("restart: stopping sop serve (timer service and workers)")
        stopped_s = self.stop_serve()
        ids, starts = self.start_runs("bench-escalate", RESTART, SPEED)
        down_for = 1200 / SPEED * 0.75 + 1  # levels 1, 2, due and 3.1 come due while down
        say(f"restart: {RESTART} runs started while it is down; restarting in {down_for:.0f}s")
        time.sleep(down_for)
        restarted = datetime.now(UTC)
        ready_s = self.start_serve()
        say(f"restart: sop serve ready again in {ready_s:.1f}s")
        self.wait_timers(ids, timeout=120 + 1200 / SPEED * 3)
        out = self.timer_report(ids, since=restarted)
        out.update({"speed": SPEED, "starts": starts, "serve_stop_s": round(stopped_s, 1), "serve_ready_s": round(ready_s, 1),
                    "noise": noise.end()})
        return out

    # all of it -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.start_endpoint()
        make_project(self.root, self.url)
        server_s = self.start_server()
        os.environ.update(self.env())
        serve_s = self.start_serve()
        say(f"sop serve ready in {serve_s:.1f}s (pool {self.pool})")
        self.make_engine()
        result: dict[str, Any] = {"server_start_s": round(server_s, 1), "serve_start_s": round(serve_s, 1),
                                  "pool": self.pool, "external_server": self.external_server,
                                  "cores": os.cpu_count(), "started_at": datetime.now(UTC).isoformat()}
        ours = {p.pid for p in self.processes()}
        result["other_python_processes_at_start"] = other_python_processes(ours)
        say("2/3 overhead: ours versus a hand-written Prefect flow")
        result["overhead"] = self.overhead() if REPS else None
        say(f"3/3 waiting runs: {WAITING} runs waiting on a person")
        result["waiting"] = self.waiting_runs() if WAITING else None
        say(f"1/3 escalation lateness: {ESCALATE} runs")
        result["escalation"] = self.escalation() if ESCALATE else None
        result["restart"] = self.restart() if RESTART else None
        ours = {p.pid for p in self.processes()}
        result["other_python_processes_at_end"] = other_python_processes(ours)
        return result


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


def report(result: dict[str, Any]) -> None:
    esc, over, wait, rst = result["escalation"], result["overhead"], result["waiting"], result["restart"]
    table = Table(title="Engine on a real stack (Prefect 3.8.8, process worker)")
    for column in ("figure", "measured", "goal", ""):
        table.add_column(column)
    if esc:
        lat = esc["late_s"]
        table.add_row(f"escalation lateness ({lat['n']} timers, {esc['runs']} runs, speed {esc['speed']:g})",
                      f"p50 {lat['p50']:.3f}s  p99 {lat['p99']:.3f}s  max {lat['max']:.3f}s  early {esc['fired_early']}",
                      f"p99 ≤ {GOAL_LATE_P99_S:g}s, none early",
                      verdict(lat["p99"] <= GOAL_LATE_P99_S and esc["fired_early"] == 0))
    if rst:
        catch = rst["fired_after_restart_s"]
        table.add_row(f"… timer service restarted while {rst['due_while_down']} timers came due",
                      f"fired {catch.get('p50', 0):.1f}s (p50) / {catch.get('max', 0):.1f}s (max) after restart "
                      f"(sop serve ready after {rst['serve_ready_s']:.1f}s); "
                      f"{rst['marked_late_in_ledger']} marked late; early {rst['fired_early']}",
                      "all fire on restart, marked late", verdict(rst["timers_fired"] == rst["timers_armed"]
                                                                  and rst["fired_early"] == 0))
    if over:
        table.add_row(f"5-step automated SOP vs hand-written Prefect flow, end to end ({over['reps']} pairs)",
                      f"{over['ratio_median_of_pairs']:.2f}× median of pairs; {over['ratio_of_medians']:.2f}× of medians "
                      f"({over['ours']['e2e_s']:.2f}s vs {over['hand']['e2e_s']:.2f}s)",
                      f"≤ {GOAL_RATIO:g}×", verdict(over["ratio_median_of_pairs"] <= GOAL_RATIO))
        table.add_row("… of which the flow body (Running → Completed)",
                      f"{over['body_ratio']:.1f}× ({over['ours']['body_s']:.2f}s vs {over['hand']['body_s']:.2f}s)", "", "")
    if wait:
        b, a = wait["before"], wait["after"]
        table.add_row(f"{wait['runs']} runs waiting on a person: processes",
                      f"{b['processes']} → {a['processes']} (peak {wait['peak']['processes']}); flow-run processes "
                      f"alive {a['flow_run_processes']}", "flat, none per run",
                      verdict(a["processes"] <= b["processes"] and a["flow_run_processes"] == 0))
        roles = ", ".join(f"{role} {b['rss_mib_by_role'].get(role, 0):.0f}→{mib:.0f}"
                          for role, mib in a["rss_mib_by_role"].items())
        table.add_row("… their memory (RSS / PSS of all service processes)",
                      f"RSS {b['rss_mib']:.0f} → {a['rss_mib']:.0f} MiB (peak {wait['peak']['rss_mib']:.0f}); "
                      f"PSS {b['pss_mib']:.0f} → {a['pss_mib']:.0f} MiB; {roles}", "flat", "")
        table.add_row("… time until every flow run had suspended",
                      f"{wait['all_suspended_after_s']:.0f}s (starting them: {wait['starts']['total_s']:.0f}s)", "", "")
    console.print(table)
    if over:
        detail = Table(title="Overhead breakdown (medians, seconds)")
        for column in ("", "end to end", "create call", "pickup → Running", "Running → Completed", "ledger run"):
            detail.add_column(column, justify="right")
        for name, label in (("ours", "ours (engine.start)"), ("hand", "hand-written (run_deployment)")):
            r = over[name]
            detail.add_row(label, f"{r['e2e_s']:.2f}", f"{r['create_s']:.3f}", f"{r['pickup_s']:.2f}",
                           f"{r['body_s']:.2f}", f"{r['ledger_run_s']:.2f}" if "ledger_run_s" in r else "—")
        console.print(detail)
    starts = Table(title="Starting runs one after another (engine.start: ledger, pages, launch)")
    for column in ("burst", "runs", "total", "start p50 / max", "launch p50 / max"):
        starts.add_column(column)
    for name, section in (("waiting", wait), ("escalation", esc), ("restart (serve down)", rst)):
        if section and section.get("starts"):
            st = section["starts"]
            starts.add_row(name, str(st["runs"]), f"{st['total_s']:.1f}s",
                           f"{st['start_s']['p50']:.3f}s / {st['start_s']['max']:.3f}s",
                           f"{st['of_which_launch_s']['p50']:.3f}s / {st['of_which_launch_s']['max']:.3f}s")
    console.print(starts)
    noise = Table(title="Machine load per phase (2 cores; other people's tests included)")
    for column in ("phase", "both cores busy", "load 1m", "Prefect SQLite locked errors"):
        noise.add_column(column)
    for name in ("overhead", "waiting", "escalation", "restart"):
        if result.get(name):
            n = result[name]["noise"]
            noise.add_row(name, f"{n['cpu_busy_pct']:.0f}%", f"{n['loadavg_1m']:.2f}", str(n["prefect_db_locked_errors"]))
    console.print(noise)
    console.print(f"other python processes at start: {len(result['other_python_processes_at_start'])}, "
                  f"at end: {len(result['other_python_processes_at_end'])}; written to {OUT.relative_to(ROOT)}")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sop-engine-bench-"))
    bench = Bench(tmp)
    say(f"temporary project {tmp}")
    try:
        result = bench.run()
    finally:
        bench.stop()
        if KEEP:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=str) + "\n")
    report(result)


if __name__ == "__main__":
    main()
