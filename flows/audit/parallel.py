"""The report with every run's timeline, on two processes: each reads and draws half the runs.

Reading 10,000 runs from the chain and drawing their charts is CPU work in Python, so one
process cannot go faster than one core. :func:`report_with_sections` splits the runs by id
at the median of the records' run ids (only to balance the halves: the two id ranges cover
every id, so the chain alone decides which runs are in the report). A forked
child reads the upper half with its own database connection and the same snapshot (records
up to the parent's newest ``seq``), reduces each run to its
:class:`~flows.audit.report.RunFacts`, draws the charts, and hands them back through a
file; the parent does the lower half meanwhile, then puts the figures together in start
order. If the child fails, the parent does its half too: the answer never depends on the
fork.

Only for a single-threaded process (the CLI): forking a process with other threads running
(``sop serve``'s API) could copy a lock another thread holds. The API draws in one process.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from markupsafe import Markup

from flows.audit.queries import Part, Window, load_runs, paused_gc
from flows.audit.report import Report, RunFacts, aggregate, run_facts
from flows.ledger import Ledger
from flows.ledger.schema import records

#: below this many records (about 1,000 runs) one process is as fast (forking and handing over cost ~50 ms)
MIN_RECORDS = 40_000

Half = tuple[list[tuple[Any, ...]], list[tuple[int, str]]]  # facts as tuples, (start seq, chart) pairs


def report_with_sections(ledger: Ledger, now: datetime, within: Window, *, sop: str | None = None,
                         sop_class: str | None = None, max_timelines: int | None = None,
                         workers: int | None = None, min_records: int = MIN_RECORDS) -> tuple[Report, list[Markup]]:
    """The report and the charts of the first ``max_timelines`` runs (None: all), in start order.

    Two processes when ``workers`` (default: the cores, at most 2) allows and the ledger holds
    at least ``min_records`` records of runs; one otherwise.
    """
    from flows.audit.html import run_section

    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    with ledger.read() as conn:  # the median run id by records (from the run_id index: milliseconds)
        max_seq = conn.execute(sa.select(sa.func.max(records.c.seq))).scalar() or 0
        with_run = records.c.run_id.is_not(None)
        count = conn.execute(sa.select(sa.func.count()).where(with_run)).scalar() or 0
        pivot = conn.execute(sa.select(records.c.run_id).where(with_run).order_by(records.c.run_id)
                             .offset(count // 2).limit(1)).scalar()

    def half(part: Part) -> Half:
        with ledger.read() as conn:
            loaded = load_runs(conn, within=within, sop_id=sop, sop_class=sop_class, part=part)
        with paused_gc():
            drawn = loaded if max_timelines is None else loaded[:max_timelines]
            return ([tuple(f) for f in run_facts(loaded, now)],
                    [(r.started_seq, str(run_section(r, now))) for r in drawn])

    if workers < 2 or count < min_records or pivot is None or not hasattr(os, "fork"):
        facts, charts = half(Part(max_seq=max_seq))
    else:
        upper = Part(low=pivot, max_seq=max_seq)
        waiting = _fork(lambda: half(upper), ledger)
        facts, charts = half(Part(high=pivot, max_seq=max_seq))
        theirs = waiting()
        if theirs is None:  # the child failed (it printed why): do its half here
            theirs = half(upper)
        facts, charts = facts + theirs[0], charts + theirs[1]
    with paused_gc():
        facts.sort(key=lambda f: f[0])
        charts.sort(key=lambda c: c[0])
        if max_timelines is not None:
            charts = charts[:max_timelines]
        report = aggregate([RunFacts._make(f) for f in facts], now, within, sop=sop, sop_class=sop_class)
        return report, [Markup(chart) for _, chart in charts]


def _fork(work: Callable[[], Any], ledger: Ledger) -> Callable[[], Any]:
    """Run ``work`` in a forked child; returns a function that waits and gives its result (None if it failed)."""
    fd, path = tempfile.mkstemp(prefix="sop-audit-", suffix=".pickle")
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        status = 1
        try:
            # one connection used by two processes corrupts it: drop (never close) the parent's
            ledger.engine.dispose(close=False)
            ledger.reader.dispose(close=False)
            with os.fdopen(fd, "wb") as out:
                pickle.dump(work(), out, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        except BaseException:  # noqa: BLE001 - the parent sees the exit status and does the work itself
            traceback.print_exc()
        finally:
            os._exit(status)
    os.close(fd)

    def wait() -> Any:
        try:
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                return None
            with open(path, "rb") as handle:
                return pickle.load(handle)
        finally:
            os.unlink(path)

    return wait


__all__ = ["MIN_RECORDS", "report_with_sections"]
