"""Trigger intake: alert ingest throughput and latency, trigger → first page, beside Alertmanager's own delivery.

Everything is real and local, measured in one run:

- the API in its own process (``uvicorn --factory flows.runtime.web:from_environment``, as a
  team runs it), on a fresh SQLite ledger, without Prefect (the flow run is created after
  the answer, off the request path, so it is not part of what a trigger waits for);
- beside it a pager process (``sop pager``, as ``sop serve`` starts one): the API writes each
  page to the outbox in the run's own transaction, the pager process renders and delivers it
  (``BENCH_TRIGGERS_PAGER=0``: no pager process, the API delivers its pages itself);
- a receiver in this process standing in for a person's phone: the owner of
  ``traffic-surge`` (role sre-lead → tom-becker) gets a ``json://`` contact pointing at it;
- Debian's Alertmanager, twice: once with its webhook pointed at a bare receiver (its own
  post → webhook latency), once pointed at the API (the whole chain to the page).

Rows:

- ingest, one alert per request, several clients at once, over 100 dedup keys: first a storm
  (the first alert of each key starts a run, the rest attach), then the same again when every
  run is open (repeats only); per-request latency and alerts/s;
- ingest, 500 alerts per request (Alertmanager batches a group);
- webhook → first page: POST a new alert to the API, until the owner's page arrives;
- Alertmanager post → webhook: POST to Alertmanager's API until its webhook arrives;
- Alertmanager post → first page: the same, through the API to the page.

``python -m bench triggers``; ``BENCH_TRIGGERS_N`` sets the ingest request count (default 3000),
``BENCH_TRIGGERS_PAGES`` the latency samples (default 200), ``BENCH_TRIGGERS_PAGER=0`` runs without
the pager process. Writes ``bench/out/triggers.json``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from flows.engine.outbox import pager_alive
from flows.ledger import Ledger
from tests.support import Alertmanager, api_process, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "triggers.json"
N = int(os.environ.get("BENCH_TRIGGERS_N", "3000"))
PAGES = int(os.environ.get("BENCH_TRIGGERS_PAGES", "200"))
CLIENTS = 4
PAGER = os.environ.get("BENCH_TRIGGERS_PAGER", "1") != "0"
TOKEN = "bench-monitor-" + uuid.uuid4().hex[:8]
GOALS = {"ingest_per_s": 500, "ingest_p99_ms": 50, "page_p99_ms": 100}
#: one notification per alert group, nothing repeated or resolved within a run of the bench
AM_TIMING: dict[str, Any] = {"group_interval": "1m", "repeat_interval": "1h", "send_resolved": False}




@dataclass
class Receiver:
    """A local HTTP endpoint recording when each POST arrived, by path."""

    arrivals: dict[str, list[float]] = field(default_factory=dict)
    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                with receiver.cond:
                    receiver.arrivals.setdefault(self.path, []).append(now)
                    receiver.bodies.setdefault(self.path, []).append(body)
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 256
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path: str) -> int:
        with self.cond:
            return len(self.arrivals.get(path, []))

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> float:
        """The arrival instant of the ``count``-th request to ``path``."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while len(self.arrivals.get(path, [])) < count:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"no request #{count} to {path} within {timeout}s")
                self.cond.wait(left)
            return self.arrivals[path][count - 1]

    def stop(self) -> None:
        self.server.shutdown()


def alert_body(*labels: dict[str, str]) -> dict[str, Any]:
    """An Alertmanager webhook v4 body."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "sop",
        "groupKey": "{}",
        "truncatedAlerts": 0,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [
            {
                "status": "firing",
                "labels": lab,
                "annotations": {"summary": "bench"},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": "",
            }
            for lab in labels
        ],
    }


def surge(service: str, **more: str) -> dict[str, str]:
    return {"alertname": "HighErrorRate", "severity": "critical", "service": service, **more}


class ApiProcess:
    """The API in its own process on a fresh ledger, the owner's contact pointing at ``receiver``."""

    def __init__(self, workdir: Path, receiver: Receiver):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "SOP_HOME": str(ROOT),
            "SOP_DATABASE_URL": f"sqlite:///{workdir / 'ledger.db'}",
            "SOP_INBOX_DIR": str(workdir / "inbox"),
            "SOP_API_LAUNCH": "0",
            "SOP_TOKEN_MONITOR": TOKEN,
            "TOM_BECKER_URL": f"json://127.0.0.1:{receiver.port}/tom",
        }
        self.log = open(workdir / "api.log", "wb")  # noqa: SIM115 - closed in stop()
        self.pager: subprocess.Popen | None = None
        if PAGER:
            self.pager = subprocess.Popen([sys.executable, "-m", "flows", "pager"], env=env, cwd=workdir,
                                          stdout=self.log, stderr=subprocess.STDOUT)
        self.process = api_process(env, self.port, workdir, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.process, self.url, 60)
            if self.pager is not None:
                self._wait_pager(Ledger(env["SOP_DATABASE_URL"]), 60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; see {workdir / 'api.log'}") from None

    def _wait_pager(self, ledger: Ledger, timeout: float) -> None:
        """Until the pager process beats (from then on the API leaves its pages to it)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.pager is not None and self.pager.poll() is not None:
                    raise RuntimeError(f"the pager process exited with code {self.pager.returncode}")
                with ledger.read() as conn:
                    if pager_alive(conn):
                        return
                time.sleep(0.1)
            raise RuntimeError(f"the pager process did not beat within {timeout:.0f}s")
        finally:
            ledger.dispose()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def cpu(self) -> float:
        """CPU seconds used so far by the API and the pager process."""
        return cpu_seconds(self.process.pid) + (cpu_seconds(self.pager.pid) if self.pager is not None else 0.0)

    def stop(self) -> None:
        for child in (self.process, self.pager):
            if child is not None:
                child.terminate()
                child.wait(10)
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    what: str
    latencies: list[float]
    count: int
    seconds: float | None = None
    unit: str = "requests"
    cpu_ms: float | None = None  # CPU per alert of the API process and the pager process

    def summary(self) -> dict[str, Any]:
        cuts = (
            statistics.quantiles(self.latencies, n=100, method="inclusive")
            if len(self.latencies) > 1
            else [self.latencies[0]] * 99
        )
        out = {
            "what": self.what,
            "n": len(self.latencies),
            "p50_ms": round(statistics.median(self.latencies) * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2),
            "max_ms": round(max(self.latencies) * 1000, 2),
        }
        if self.seconds:
            out["per_s"] = round(self.count / self.seconds, 1)
            out["count"] = self.count
        if self.cpu_ms is not None:
            out["api_cpu_ms_per_alert"] = round(self.cpu_ms, 2)
        return out


def send_single_alerts(ports: list[int], run: str, n: int = N, clients: int = CLIENTS) -> tuple[list[float], float]:
    """``n`` requests of one alert each, ``clients`` at a time (client k on ``ports[k % len(ports)]``), over ~100 dedup
    keys; each request's seconds, and the seconds of the whole.

    The clients send pre-encoded bodies over kept-alive ``http.client`` connections: on a
    2-core machine the load generator shares the CPUs with the API, so it must cost little
    (Alertmanager, in Go, costs less still).
    """
    latencies: list[float] = []
    lock = threading.Lock()
    bodies = [json.dumps(alert_body(surge(f"{run}-{i % 100}", instance=f"i{i}"))).encode() for i in range(n)]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def work(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[k % len(ports)], timeout=30)
        for i in range(k, n, clients):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/alerts/alertmanager", body=bodies[i], headers=headers)
            answer = conn.getresponse()
            answer.read()
            elapsed = time.perf_counter() - t0
            if answer.status != 200:
                raise RuntimeError(f"the API answered {answer.status}")
            with lock:
                latencies.append(elapsed)
        conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    return latencies, time.perf_counter() - started


def ingest_single(api: ApiProcess, run: str, what: str) -> Row:
    """:func:`send_single_alerts` to one API process."""
    cpu = api.cpu()
    latencies, seconds = send_single_alerts([api.port], run)
    cpu = api.cpu() - cpu
    return Row(f"ingest, 1 alert/request, {CLIENTS} clients: {what}", latencies, N, seconds, "alerts", cpu / N * 1000)


def ingest_batched(api: ApiProcess, run: str, batch: int = 500, batches: int = 10) -> Row:
    latencies: list[float] = []
    bodies = [
        alert_body(*[surge(f"{run}-{i % 100}", instance=f"b{b}-{i}") for i in range(batch)]) for b in range(batches)
    ]
    with api.client() as client:
        cpu = api.cpu()
        started = time.perf_counter()
        for body in bodies:
            t0 = time.perf_counter()
            client.post("/v1/alerts/alertmanager", json=body).raise_for_status()
            latencies.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - started
        cpu = api.cpu() - cpu
    return Row(
        f"ingest: {batch} alerts/request", latencies, batch * batches, seconds, "alerts", cpu / (batch * batches) * 1000
    )


def first_page(api: ApiProcess, receiver: Receiver, run: str, send: Callable[[dict[str, str]], None], what: str) -> Row:
    """Each sample: a new alert (a fresh dedup key) sent by ``send``, until the owner's page arrives."""
    latencies = []
    for i in range(PAGES):
        seen = receiver.count("/tom")
        t0 = time.perf_counter()
        send(surge(f"{run}-page-{i}"))
        latencies.append(receiver.wait_for("/tom", seen + 1) - t0)
    return Row(what, latencies, PAGES)


def alertmanager_own(am: Alertmanager, receiver: Receiver, run: str) -> Row:
    latencies = []
    for i in range(PAGES):
        seen = receiver.count("/am")
        t0 = time.perf_counter()
        am.post(surge(f"{run}-am-{i}"))
        latencies.append(receiver.wait_for("/am", seen + 1) - t0)
    return Row("Alertmanager: post → its webhook (bare receiver)", latencies, PAGES)


def main() -> None:
    """Run every row and print the table (and bench/out/triggers.json)."""
    console = Console(width=max(Console().width, 160))
    load = os.getloadavg()
    receiver = Receiver()
    workdir = Path(tempfile.mkdtemp(prefix="bench-triggers-"))
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    api = ApiProcess(workdir, receiver)
    rows: list[Row] = []
    ams: list[Alertmanager] = []
    run = uuid.uuid4().hex[:6]
    try:
        with api.client() as client:  # warm-up: imports, first SOP version, Apprise plugin loading
            for i in range(20):
                client.post("/v1/alerts/alertmanager", json=alert_body(surge(f"warm-{i}"))).raise_for_status()
        receiver.wait_for("/tom", 20, timeout=30)
        rows.append(ingest_single(api, run, "storm over 100 keys (100 new runs)"))
        rows.append(ingest_single(api, run, "repeats (all 100 runs open)"))
        rows.append(ingest_batched(api, run))
        with api.client() as client:
            rows.append(
                first_page(
                    api,
                    receiver,
                    run,
                    lambda labels: client.post("/v1/alerts/alertmanager", json=alert_body(labels)).raise_for_status(),
                    "webhook → first page delivered (owner's json:// contact)",
                )
            )
        if binary:
            bare = Alertmanager(binary, workdir / "am-bare", f"http://127.0.0.1:{receiver.port}/am", TOKEN,
                                **AM_TIMING)
            ams.append(bare)
            rows.append(alertmanager_own(bare, receiver, run))
            chained = Alertmanager(binary, workdir / "am-api", f"{api.url}/v1/alerts/alertmanager", TOKEN,
                                   **AM_TIMING)
            ams.append(chained)
            rows.append(
                first_page(
                    api,
                    receiver,
                    f"{run}-am",
                    chained.post,
                    "Alertmanager post → first page delivered (through the API)",
                )
            )
    finally:
        for am in ams:
            am.stop()
        api.stop()
        receiver.stop()
    summaries = [r.summary() for r in rows]
    table = Table(
        title=f"Trigger intake ({os.cpu_count()} CPUs, load average {load[0]:.1f} at start; API in its "
        f"own process{', pages by a pager process' if PAGER else ', pages sent by the API itself'}, "
        "SQLite ledger, no Prefect on the path)",
        title_justify="left",
    )
    for column in ("what", "n", "alerts/s", "p50 ms", "p99 ms", "max ms", "CPU ms/alert"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for s in summaries:
        table.add_row(
            s["what"],
            str(s["n"]),
            f"{s['per_s']:,.0f}" if "per_s" in s else "—",
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{s['max_ms']:.1f}",
            f"{s['api_cpu_ms_per_alert']:.2f}" if "api_cpu_ms_per_alert" in s else "—",
        )
    console.print(table)
    single, repeats, page = summaries[0], summaries[1], summaries[3]
    console.print(
        f"goals: ingest ≥ {GOALS['ingest_per_s']}/s → storm {single['per_s']:,.0f}/s, repeats "
        f"{repeats['per_s']:,.0f}/s; ingest p99 ≤ {GOALS['ingest_p99_ms']} ms → storm {single['p99_ms']:.1f} ms, "
        f"repeats {repeats['p99_ms']:.1f} ms; "
        f"trigger → first page p99 ≤ {GOALS['page_p99_ms']} ms → {page['p99_ms']:.1f} ms "
        "(reference from the issue: a Prefect deployment paging in its first task, p99 ≈ 5 s)"
    )
    if not binary:
        console.print(
            "[yellow]Alertmanager rows skipped: prometheus-alertmanager is not installed (sudo make deps-system)[/]"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "cores": os.cpu_count(),
                "load_average_at_start": load[0],
                "pager_process": PAGER,
                "at": datetime.now(UTC).isoformat(),
                "rows": summaries,
                "goals": GOALS,
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
