"""Team mode: alert ingest with two API processes and a pager on one ledger, PostgreSQL beside SQLite.

Per database, in one run: a fresh ledger (a private PostgreSQL cluster: ``tests/postgres.py``;
a SQLite file), two API processes (``uvicorn --factory flows.runtime.web:from_environment`` on
127.0.0.1, as a team runs them behind a balancer), one pager process (``sop pager``), a receiver
standing in for the owner's phone. CLIENTS clients send one alert per request over kept-alive
connections, alternating between the two APIs: a storm (3,000 requests over 100 dedup keys:
100 new runs, the rest attach), then the same again when every run is open (repeats only).
CPU per alert: the API processes and the pager; on PostgreSQL also the server's (its processes,
living and ended), which on SQLite is spent inside the API processes. The cluster runs with fsync off.

Two layouts, each with both databases: **shared** (every process on both cores, as one machine
runs the whole stack) and **split** (the API processes and the pager on core 0; the database
server and the clients on core 1), which stands for a team's setup with the database on a host
of its own: the API tier has one core in both databases' runs, and PostgreSQL's server work no
longer takes it from the API processes. SQLite's work is the API processes' own, on core 0.
The API processes reach PostgreSQL as docs/team.md says for each: in the shared layout (one host)
over its Unix socket, in the split layout (a database host of its own) over TCP.

Each layout runs ``BENCH_TEAM_ROUNDS`` rounds (3), each round both databases on fresh ledgers, the order
alternating (SQLite first, then PostgreSQL first, …) so that a machine growing busier or quieter does not
favour one. The table gives each figure's median over the rounds; the verdict compares the databases round
by round (the median of the rounds' ratios, each round's ratio printed): on a shared two-core machine one
round's ratio swings by a third either way (docs/benchmarks.md, "Team ingest", 2026-12-07).

``python -m bench team``; ``BENCH_TEAM_N`` sets the request count (default 3000),
``BENCH_TEAM_CLIENTS`` the clients (4), ``BENCH_TEAM_LAYOUTS`` the layouts (``shared,split``),
``BENCH_TEAM_ROUNDS`` the rounds (3), ``BENCH_TEAM_TCP=1`` TCP in both layouts. Writes
``bench/out/team.json`` (every round's rows, and the medians). Goals (issue #19): PostgreSQL ≥ SQLite,
≥ 1,000 alerts/s, p99 ≤ 50 ms.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.triggers_bench import TOKEN, Receiver, Row, alert_body, cpu_seconds, send_single_alerts, surge
from flows.engine.outbox import pager_alive
from flows.ledger import Ledger
from tests.support import api_process, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "team.json"
N = int(os.environ.get("BENCH_TEAM_N", "3000"))
CLIENTS = int(os.environ.get("BENCH_TEAM_CLIENTS", "4"))
LAYOUTS = os.environ.get("BENCH_TEAM_LAYOUTS", "shared,split").split(",")
API_CORE, DATABASE_CORE = {0}, {1}  # the split layout's cores
TCP_ALWAYS = os.environ.get("BENCH_TEAM_TCP") == "1"
ROUNDS = max(1, int(os.environ.get("BENCH_TEAM_ROUNDS", "3")))
#: a row's figures, as the table shows them (medians over the rounds)
FIGURES = ("per_s", "p50_ms", "p99_ms", "max_ms", "api_cpu_ms_per_alert", "server_cpu_ms_per_alert")


def transport(layout: str) -> str:
    """How the API processes reach PostgreSQL in a layout: as docs/team.md says, its Unix socket on one host."""
    return "tcp" if TCP_ALWAYS or layout == "split" else "socket"


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of process ``pid`` on ``cores`` (threads and children it starts later inherit it); a
    RuntimeError when the system does not let it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:
            raise RuntimeError(f"cannot pin process {pid} to cores {sorted(cores)}: {exc}") from None
    if os.sched_getaffinity(pid) != cores:
        raise RuntimeError(f"process {pid} runs on cores {sorted(os.sched_getaffinity(pid))}, not {sorted(cores)}")


def server_processes(data: Path) -> tuple[int, list[int]]:
    """A PostgreSQL cluster's postmaster (from its data folder) and the processes it runs now."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    return postmaster, [int(pid) for pid in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()]


def pin_cluster(data: Path, cores: set[int]) -> None:
    """The PostgreSQL server on ``cores``: its postmaster (the backends it forks inherit it) and its processes."""
    postmaster, children = server_processes(data)
    pin(postmaster, cores)
    for child in children:
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            pin(child, cores)
APIS = 2
GOALS = {"per_s": 1000, "p99_ms": 50}


class Team:
    """Two API processes and a pager process on one ledger URL."""

    def __init__(self, url: str, workdir: Path, receiver: Receiver, server: Path | None = None, split: bool = False):
        self.server = server  # PostgreSQL: the cluster's data folder (its postmaster.pid)
        env = {**os.environ, "SOP_HOME": str(ROOT), "SOP_DATABASE_URL": url, "SOP_INBOX_DIR": str(workdir / "inbox"),
               "SOP_API_LAUNCH": "0", "SOP_TOKEN_MONITOR": TOKEN,
               "TOM_BECKER_URL": f"json://127.0.0.1:{receiver.port}/tom"}
        ledger = Ledger(url)
        ledger.migrate()  # once, before the processes start (each would otherwise race to do it)
        self.log = open(workdir / "team.log", "wb")  # noqa: SIM115 - closed in stop()
        self.pager = subprocess.Popen([sys.executable, "-m", "flows", "pager"], env=env, cwd=workdir,
                                      stdout=self.log, stderr=subprocess.STDOUT)
        self.ports = [free_port() for _ in range(APIS)]
        self.apis = [api_process(env, port, workdir, stdout=self.log, stderr=subprocess.STDOUT) for port in self.ports]
        try:
            for api, port in zip(self.apis, self.ports, strict=True):
                wait_healthy(api, f"http://127.0.0.1:{port}", 60)
            deadline = time.monotonic() + 60
            while True:
                with ledger.read() as conn:
                    if pager_alive(conn):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the pager process did not beat within 60 s")
                time.sleep(0.1)
            if split:
                for process in [*self.apis, self.pager]:
                    pin(process.pid, API_CORE)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; see {workdir / 'team.log'}") from None
        finally:
            ledger.dispose()

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in [*self.apis, self.pager])

    def server_cpu(self) -> float:
        """The PostgreSQL server's CPU seconds so far: the postmaster, its living processes and those that ended."""
        if self.server is None:
            return 0.0
        postmaster, children = server_processes(self.server)
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        ended = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        living = 0.0
        for pid in children:
            with contextlib.suppress(OSError):
                living += cpu_seconds(pid)
        return cpu_seconds(postmaster) + ended + living

    def stop(self) -> None:
        for child in [*self.apis, self.pager]:
            child.terminate()
            child.wait(10)
        self.log.close()


def ingest(team: Team, run: str, what: str) -> tuple[Row, float]:
    """N one-alert requests over 100 keys (:func:`send_single_alerts`: CLIENTS at once, client k on API k mod 2); and the
    PostgreSQL server's CPU ms per alert meanwhile (0 on SQLite)."""
    cpu, server = team.cpu(), team.server_cpu()
    latencies, seconds = send_single_alerts(team.ports, run, N, CLIENTS)
    return (Row(what, latencies, N, seconds, "alerts", (team.cpu() - cpu) / N * 1000),
            (team.server_cpu() - server) / N * 1000)


def measure(database: str, url: str, workdir: Path, receiver: Receiver, server: Path | None = None,
            layout: str = "shared") -> list[dict]:
    team = Team(url, workdir, receiver, server, split=layout == "split")
    try:
        warm = json.dumps(alert_body(surge("warm"))).encode()
        for port in team.ports:  # imports, the first SOP version, Apprise's plugins
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(20):
                conn.request("POST", "/v1/alerts/alertmanager", body=warm,
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
                conn.getresponse().read()
            conn.close()
        run = uuid.uuid4().hex[:6]
        rows = [ingest(team, run, "storm: 100 keys, 100 new runs"), ingest(team, run, "repeats: all 100 runs open")]
    finally:
        team.stop()
    return [{"layout": layout, "database": database, "transport": transport(layout) if server else "in process",
             **row.summary(), "server_cpu_ms_per_alert": round(server_ms, 2)}
            for row, server_ms in rows]


def medians(rows: list[dict]) -> list[dict]:
    """One row per layout, database and phase: each figure's median over the rounds."""
    keyed: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        keyed.setdefault((row["layout"], row["database"], row["what"]), []).append(row)
    return [{**same[0], **{f: round(statistics.median(r[f] for r in same), 2) for f in FIGURES}, "rounds": len(same)}
            for same in keyed.values()]


def ratios(rows: list[dict], layout: str, what: str) -> list[float]:
    """PostgreSQL's alerts/s over SQLite's, round by round, in a layout and phase."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        if row["layout"] == layout and row["what"] == what:
            by_round.setdefault(row["round"], {})[row["database"]] = row["per_s"]
    return [pair["PostgreSQL"] / pair["SQLite"] for _, pair in sorted(by_round.items()) if len(pair) == 2]


def main() -> None:
    """Both databases, every round, one table of medians (and bench/out/team.json)."""
    from tests.postgres import SUPERUSER, PostgresCluster

    console = Console(width=max(Console().width, 150))
    load = os.getloadavg()
    receiver = Receiver()
    workdir = Path(tempfile.mkdtemp(prefix="bench-team-"))
    everywhere = os.sched_getaffinity(0)
    layouts = [layout for layout in LAYOUTS if layout == "shared" or API_CORE | DATABASE_CORE <= everywhere]
    if layouts != LAYOUTS:
        console.print(f"the split layout needs cores {sorted(API_CORE | DATABASE_CORE)}; this process may use "
                      f"{sorted(everywhere)}: shared layout only")
    cluster = PostgresCluster().start()
    data = cluster.folder / "data"  # type: ignore[operator]
    rows = []
    try:
        for layout in layouts:
            split = layout == "split"
            pin_cluster(data, DATABASE_CORE if split else everywhere)
            pin(os.getpid(), DATABASE_CORE if split else everywhere)  # the clients' threads (and the receiver's)
            for round_ in range(ROUNDS):
                order = ("SQLite", "PostgreSQL") if round_ % 2 == 0 else ("PostgreSQL", "SQLite")
                for database in order:
                    console.print(f"{layout}, round {round_ + 1} of {ROUNDS}: {database}…")
                    folder = workdir / layout / str(round_) / database
                    folder.mkdir(parents=True)
                    name = f"bench_team_{layout}_{round_}"
                    url = f"sqlite:///{folder / 'ledger.db'}" if database == "SQLite" else cluster.database(name)
                    if database == "PostgreSQL" and transport(layout) == "socket":
                        url = f"postgresql+psycopg://{SUPERUSER}@/{name}?host={cluster.folder}&port={cluster.port}"
                    measured = measure(database, url, folder, receiver, data if database == "PostgreSQL" else None,
                                       layout)
                    rows += [{**row, "round": round_ + 1} for row in measured]
    finally:
        pin(os.getpid(), everywhere)
        cluster.stop()
        receiver.stop()
    shown = medians(rows)
    table = Table(title=f"Team ingest: {APIS} API processes + a pager, {CLIENTS} clients, {N} one-alert requests "
                        f"({os.cpu_count()} CPUs, load average {load[0]:.1f} at start; PostgreSQL: fsync off); "
                        f"medians of {ROUNDS} round(s), each a fresh ledger. "
                        "shared: every process on every core; split: the API processes and the pager on core 0, "
                        "the database server and the clients on core 1; PostgreSQL over "
                        + ", ".join(f"{transport(layout)} ({layout})" for layout in layouts),
                  title_justify="left")
    for column in ("layout", "ledger", "what", "alerts/s", "p50 ms", "p99 ms", "max ms", "CPU ms/alert", "+ server's"):
        table.add_column(column, justify="left" if column in ("layout", "ledger", "what") else "right")
    for s in shown:
        table.add_row(s["layout"], s["database"], s["what"], f"{s['per_s']:,.0f}", f"{s['p50_ms']:.1f}",
                      f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}", f"{s['api_cpu_ms_per_alert']:.2f}",
                      f"{s['server_cpu_ms_per_alert']:.2f}" if s["database"] == "PostgreSQL" else "(in the APIs)")
    console.print(table)
    for layout in layouts:
        pg = [r for r in shown if r["database"] == "PostgreSQL" and r["layout"] == layout]
        sq = [r for r in shown if r["database"] == "SQLite" and r["layout"] == layout]
        console.print(f"goals ({layout}): PostgreSQL ≥ SQLite, ≥ 1,000 alerts/s, p99 ≤ 50 ms → " + "; ".join(
            f"{p['what'].split(':')[0]} {p['per_s']:,.0f}/s vs SQLite {s['per_s']:,.0f}/s "
            f"({statistics.median(each := ratios(rows, layout, p['what'])):.2f}×: "
            f"{', '.join(f'{r:.2f}' for r in each)} by round), p99 {p['p99_ms']:.1f} ms"
            for p, s in zip(pg, sq, strict=True)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cores": os.cpu_count(), "load_average_at_start": load[0], "n": N, "clients": CLIENTS,
                               "rounds": ROUNDS, "at": datetime.now(UTC).isoformat(), "medians": shown, "rows": rows,
                               "goals": GOALS}, indent=2) + "\n")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
