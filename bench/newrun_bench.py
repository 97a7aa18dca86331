"""A new run's cost in the engine, in process: statements, CPU, and the pager's lock hold.

What the first alert of each key pays in an alert storm (see ``bench/triggers_bench.py``),
without HTTP: ``Engine.start`` of ``traffic-surge`` (the SOP the storm starts) on a fresh
SQLite ledger in a temp folder and, beside it, on a fresh database of a private PostgreSQL
cluster (``tests/postgres.py``; over its Unix socket), with a pager process's row alive in
``pagers`` so the pages are left in the outbox for it (as in the storm). Rows:

- statements per new run on the ledger's write connection, BEGIN included, COMMIT not, an
  executemany once: those SQLAlchemy executes (its ``before_cursor_execute`` event), those
  the ledger sends straight to the driver (``Tx.execute``, ``executemany``, ``first``, and
  on PostgreSQL ``defer``: they go with the COMMIT), and BEGIN by SQLAlchemy's ``begin`` event;
- engine CPU per new run (``time.thread_time`` around ``start``), p50 and p99;
- the pager's delivery-record transaction: 20 pages of 3 delivery results each (what
  ``Pager._write_chunk`` writes in one transaction), CPU from BEGIN to COMMIT, that is
  while it holds the ledger's write lock;
- the pager's CPU per page: the pages the runs left in the outbox, delivered as ``sop pager`` delivers them (a
  ``Drainer`` on an engine of its own: claim, render for each recipient, deliver to a ``json://`` receiver in a
  process of its own and to the local inbox, record), the process's CPU (every thread) over the count.

``python -m bench newrun``; ``BENCH_NEWRUN_N`` sets the runs (default 300), ``BENCH_NEWRUN_DATABASES`` the
ledgers (``sqlite,postgresql``; PostgreSQL by default when its server binaries are installed). Writes
``bench/out/newrun.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.notify_bench import Receiver
from flows import runtime
from flows.engine.outbox import Drainer
from flows.engine.paging import WRITE_CHUNK, Batched, Pager
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger, Tx
from flows.ledger.schema import outbox, pagers
from tests.postgres import SUPERUSER, PostgresCluster, PostgresUnavailable, server_binaries

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "newrun.json"
N = int(os.environ.get("BENCH_NEWRUN_N", "300"))
SOP = "traffic-surge"
CHUNKS = 30


def trigger(service: str) -> dict[str, Any]:
    """The ``trigger`` the intake pins for an Alertmanager alert (see flows.triggers.model)."""
    return {"kind": "alert", "source": "alertmanager", "status": "firing",
            "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": service},
            "annotations": {"summary": "bench"}, "fingerprint": service, "starts_at": datetime.now(UTC).isoformat(),
            "generator_url": "http://prometheus/graph", "receiver": "sop"}


class Statements:
    """Counts the statements of the ledger's write connections (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.count = 0
        sa.event.listen(ledger.engine, "begin", self._begin)
        sa.event.listen(ledger.engine, "before_cursor_execute", self._sqlalchemy)
        for name in ("execute", "executemany", "first", "defer"):  # what the ledger sends straight to the driver
            if hasattr(Tx, name):
                setattr(Tx, name, self._counted(getattr(Tx, name), deferred=name == "defer"))

    def _begin(self, _conn: Any) -> None:
        self.count += 1

    def _sqlalchemy(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):  # counted by the begin event, wherever it is sent
            self.count += 1

    def _counted(self, method: Any, deferred: bool = False) -> Any:
        def counted(tx: Tx, statement: Any, params: Any = None) -> Any:
            if deferred and tx.deferred is None:  # inserted at once: counted as the executemany it calls
                return method(tx, statement, params)
            if tx.driver is not None and (params or not isinstance(params, list)):  # an empty executemany sends nothing
                self.count += 1
            return method(tx, statement, params) if params is not None else method(tx, statement)
        return counted


def cuts(values: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``values``."""
    return statistics.median(values), statistics.quantiles(values, n=100, method="inclusive")[98]


def new_runs(engine: Engine, statements: Statements) -> tuple[list[float], list[float]]:
    """Start N runs; the CPU (ms) and the statement count of each."""
    cpu: list[float] = []
    counts: list[float] = []
    for i in range(10):  # warm-up: imports, the first SOP version, statement caches
        engine.start(SOP, {"service": f"warm-{i}"}, initiator="monitor", trigger=trigger(f"warm-{i}"))
    for i in range(N):
        before = statements.count
        t0 = time.thread_time()
        result = engine.start(SOP, {"service": f"svc-{i}"}, initiator="monitor", trigger=trigger(f"svc-{i}"))
        cpu.append((time.thread_time() - t0) * 1000)
        counts.append(statements.count - before)
        assert not result.attached
    return cpu, counts


def delivery_chunks(ledger: Ledger, pager: Pager, run_ids: list[str]) -> list[float]:
    """CPU (ms) of each delivery-record transaction, BEGIN to COMMIT (the ledger's write lock held)."""
    from notifications import DeliveryResult

    held: list[float] = []
    began: list[float] = []
    sa.event.listen(ledger.engine, "begin", lambda _conn: began.append(time.thread_time()))
    sa.event.listen(ledger.engine, "commit", lambda _conn: held.append((time.thread_time() - began[-1]) * 1000))
    now = ledger.clock.now()

    def results(n: int) -> list[Any]:
        return [DeliveryResult(recipient=f"person-{k}", recipient_kind="person", destination=f"json://host/p{k}",
                               ok=True, error=None, attempts=1, latency=0.012, at=now, kind="assigned")
                for k in range(n)]

    for c in range(CHUNKS):
        batch = [Batched(run_ids[(c * WRITE_CHUNK + k) % len(run_ids)], "brief-cs", "assigned", results(3))
                 for k in range(WRITE_CHUNK)]
        pager._write_chunk(batch)
    return held[2:]  # the first two: warm-up


def pager_pages(ledger: Ledger, library: Any) -> tuple[int, float]:
    """Deliver the pages the runs left in the outbox as a pager process does; (pages, CPU ms per page)."""
    with ledger.transaction() as tx:  # the stand-in pager gone: this one claims
        tx.conn.execute(pagers.delete())
    with ledger.read() as conn:
        pages = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.done_at.is_(None))).scalar()
    engine = runtime.engine(library=library, prefect=False, background_pages=True, pager_process=True, migrate=False)
    drainer = Drainer(engine)
    started = time.process_time()
    while drainer.drain_once() or engine.pager.backlog():
        time.sleep(0.005)  # pages in the delivery threads' hands: the next claim waits for their records
    engine.pager.close()
    cpu = time.process_time() - started
    with ledger.read() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.done_at.is_(None))).scalar()
    if left:
        raise RuntimeError(f"{left} of {pages} pages were not delivered")
    engine.ledger.dispose()
    return pages, cpu * 1000 / pages


def databases() -> list[str]:
    """``BENCH_NEWRUN_DATABASES`` (sqlite,postgresql); by default PostgreSQL too when its server binaries are here."""
    chosen = os.environ.get("BENCH_NEWRUN_DATABASES")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    try:
        server_binaries()
    except PostgresUnavailable:
        return ["sqlite"]
    return ["sqlite", "postgresql"]


def measure(url: str, workdir: Path) -> dict[str, Any]:
    """Every row's figures on the ledger at ``url`` (a fresh one)."""
    os.environ["SOP_DATABASE_URL"] = url  # the pager's engine (runtime.engine) opens it
    ledger = Ledger(url)
    ledger.migrate()
    statements = Statements(ledger)
    try:
        library = load_library(ROOT)
        with ledger.transaction() as tx:  # a pager process alive for the whole bench: pages are left to it
            far = datetime.now(UTC) + timedelta(days=1)
            tx.conn.execute(pagers.insert().values(name="bench-pager", pid=0, started_at=far, beat_at=far))
        pager = Pager(library.site, ledger)
        engine = Engine(library, ledger, pager=pager)
        cpu, counts = new_runs(engine, statements)
        with ledger.read() as conn:
            run_ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM runs ORDER BY started_at LIMIT 100"))]
        held = delivery_chunks(ledger, pager, run_ids)
        pager.close()
        pages, page_cpu = pager_pages(ledger, library)
    finally:
        ledger.dispose()
    cpu50, cpu99 = cuts(cpu)
    held50, held99 = cuts(held)
    return {
        "statements_per_new_run": {"min": min(counts), "median": statistics.median(counts), "max": max(counts)},
        "engine_cpu_ms_per_new_run": {"p50": round(cpu50, 3), "p99": round(cpu99, 3)},
        "pager_lock_held_cpu_ms_per_transaction": {"pages": WRITE_CHUNK, "p50": round(held50, 3),
                                                   "p99": round(held99, 3)},
        "pager_cpu_ms_per_page": {"pages": pages, "mean": round(page_cpu, 3)},
    }


def main() -> None:
    """Measure on each database, print the table, write bench/out/newrun.json."""
    load = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-newrun-"))
    os.environ["SOP_INBOX_DIR"] = str(workdir / "inbox")
    receiver = Receiver()
    os.environ["TOM_BECKER_URL"] = receiver.url(0, 0)
    figures: dict[str, dict[str, Any]] = {}
    cluster: PostgresCluster | None = None
    try:
        for name in databases():
            if name == "sqlite":
                figures["SQLite"] = measure(f"sqlite:///{workdir / 'ledger.db'}", workdir)
                continue
            cluster = PostgresCluster().start()
            cluster.database("bench_newrun")
            # over its Unix socket, as docs/team.md says for processes on the database's host
            figures["PostgreSQL"] = measure(f"postgresql+psycopg://{SUPERUSER}@/bench_newrun?host={cluster.folder}"
                                            f"&port={cluster.port}", workdir)
    finally:
        receiver.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {"cores": os.cpu_count(), "load_average_at_start": load[0], "at": datetime.now(UTC).isoformat(),
               "sop": SOP, "runs": N, "databases": figures}
    table = Table(title=f"A new run of {SOP} ({os.cpu_count()} CPUs, load average {load[0]:.1f} at start; "
                        f"{N} runs, pages left to a pager process; PostgreSQL: fsync off, over its socket)",
                  title_justify="left")
    table.add_column("what", justify="left")
    for database in figures:
        table.add_column(f"{database} p50", justify="right")
        table.add_column(f"{database} p99", justify="right")

    def row(what: str, cells: Any) -> None:
        table.add_row(what, *[cell for figure in figures.values() for cell in cells(figure)])

    row("statements per new run (median; min–max)", lambda f: (
        f"{f['statements_per_new_run']['median']:.0f}",
        f"{f['statements_per_new_run']['min']:.0f}–{f['statements_per_new_run']['max']:.0f}"))
    row("engine CPU per new run, ms", lambda f: (f"{f['engine_cpu_ms_per_new_run']['p50']:.2f}",
                                                 f"{f['engine_cpu_ms_per_new_run']['p99']:.2f}"))
    row(f"pager: lock held per delivery-record transaction ({WRITE_CHUNK} pages), CPU ms", lambda f: (
        f"{f['pager_lock_held_cpu_ms_per_transaction']['p50']:.2f}",
        f"{f['pager_lock_held_cpu_ms_per_transaction']['p99']:.2f}"))
    row("pager: CPU per page delivered (render, deliver, record), ms (mean)", lambda f: (
        f"{f['pager_cpu_ms_per_page']['mean']:.2f}", f"({f['pager_cpu_ms_per_page']['pages']} pages)"))
    Console(width=max(Console().width, 140)).print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
