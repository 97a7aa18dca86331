"""A new run's cost in the engine, in process: statements, CPU, and the pager's lock hold.

What the first alert of each key pays in an alert storm (see ``bench/triggers_bench.py``),
without HTTP: ``Engine.start`` of ``traffic-surge`` (the SOP the storm starts) on a fresh
SQLite ledger in a temp folder, with a pager process's row alive in ``pagers`` so the pages
are left in the outbox for it (as in the storm). Rows:

- statements per new run on the ledger's write connection, BEGIN included, COMMIT not, an
  executemany once: those SQLAlchemy executes (its ``before_cursor_execute`` event), those
  the ledger sends straight to SQLite's driver (``Tx.execute``, ``executemany``, ``first``),
  and BEGIN by SQLAlchemy's ``begin`` event;
- engine CPU per new run (``time.thread_time`` around ``start``), p50 and p99;
- the pager's delivery-record transaction: 20 pages of 3 delivery results each (what
  ``Pager._write_chunk`` writes in one transaction), CPU from BEGIN to COMMIT, that is
  while it holds the ledger's write lock;
- the pager's CPU per page: the pages the runs left in the outbox, delivered as ``sop pager`` delivers them (a
  ``Drainer`` on an engine of its own: claim, render for each recipient, deliver to a ``json://`` receiver in a
  process of its own and to the local inbox, record), the process's CPU (every thread) over the count.

``python -m bench newrun``; ``BENCH_NEWRUN_N`` sets the runs (default 300). Writes
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
        for name in ("execute", "executemany", "first"):  # what the ledger sends straight to the driver
            if hasattr(Tx, name):
                setattr(Tx, name, self._counted(getattr(Tx, name)))

    def _begin(self, _conn: Any) -> None:
        self.count += 1

    def _sqlalchemy(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):  # counted by the begin event, wherever it is sent
            self.count += 1

    def _counted(self, method: Any) -> Any:
        def counted(tx: Tx, statement: Any, params: Any = None) -> Any:
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


def main() -> None:
    """Measure, print the table, write bench/out/newrun.json."""
    load = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-newrun-"))
    os.environ["SOP_INBOX_DIR"] = str(workdir / "inbox")
    url = f"sqlite:///{workdir / 'ledger.db'}"
    os.environ["SOP_DATABASE_URL"] = url  # the pager's engine (runtime.engine) opens it
    receiver = Receiver()
    os.environ["TOM_BECKER_URL"] = receiver.url(0, 0)
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
        receiver.stop()
        ledger.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    cpu50, cpu99 = cuts(cpu)
    held50, held99 = cuts(held)
    summary = {
        "cores": os.cpu_count(), "load_average_at_start": load[0], "at": datetime.now(UTC).isoformat(),
        "sop": SOP, "runs": N,
        "statements_per_new_run": {"min": min(counts), "median": statistics.median(counts), "max": max(counts)},
        "engine_cpu_ms_per_new_run": {"p50": round(cpu50, 3), "p99": round(cpu99, 3)},
        "pager_lock_held_cpu_ms_per_transaction": {"pages": WRITE_CHUNK, "p50": round(held50, 3),
                                                   "p99": round(held99, 3)},
        "pager_cpu_ms_per_page": {"pages": pages, "mean": round(page_cpu, 3)},
    }
    table = Table(title=f"A new run of {SOP} ({os.cpu_count()} CPUs, load average {load[0]:.1f} at start; "
                        f"{N} runs, SQLite ledger, pages left to a pager process)", title_justify="left")
    for column in ("what", "p50", "p99"):
        table.add_column(column, justify="left" if column == "what" else "right")
    table.add_row("statements per new run (median; min–max)", f"{statistics.median(counts):.0f}",
                  f"{min(counts):.0f}–{max(counts):.0f}")
    table.add_row("engine CPU per new run, ms", f"{cpu50:.2f}", f"{cpu99:.2f}")
    table.add_row(f"pager: lock held per delivery-record transaction ({WRITE_CHUNK} pages), CPU ms",
                  f"{held50:.2f}", f"{held99:.2f}")
    table.add_row(f"pager: CPU per page delivered ({pages} pages: render, deliver, record), ms (mean)",
                  f"{page_cpu:.2f}", "")
    Console(width=max(Console().width, 140)).print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
