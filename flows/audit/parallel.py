"""The report with every run's timeline, on two processes: each reads and draws half the runs.

Reading 10,000 runs from the chain and drawing their charts is CPU work in Python, so one
process cannot go faster than one core. :func:`report_with_sections` cuts the runs in start
order, at the middle record of the chain (or of the window's records: only to balance the
halves; the two parts cover every run, so the chain alone decides which runs are in the
report). A forked child reads the later runs with its own database connection and the same
snapshot (records up to the parent's newest ``seq``), from the cut on; the parent reads the
earlier ones meanwhile (the records before the cut, then those its runs still open at the
cut added after it, by run id). Each reduces its runs to their
:class:`~flows.audit.report.RunFacts` and draws their sections as one block of HTML
(:class:`~flows.audit.html.Sections`); the child hands its facts and its block back through
a file. The parent's runs all started before the child's, so the report is the parent's
then the child's, in start order, without sorting or re-joining anything. If the child
fails, the parent does its half too: the answer never depends on the fork.

Forking is safe only in a process that runs one thread (the CLI): a fork copies every lock
as it is, and one held by another thread (``sop serve``'s API serves requests on a thread
pool) would stay held in the child for ever. So both entry points fork only when
:func:`forking_is_safe` says so, and otherwise do the whole work in this process: a caller
need not know (the API gets one process without asking).
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import tempfile
import threading
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.audit.queries import Part, at_column, load_runs, outlines, paused_gc, record_time
from flows.audit.report import ComplianceReport, RunFacts, aggregate, run_facts
from flows.audit.scope import Window
from flows.audit.verification import Anchor, Verification, head_of
from flows.audit.verify import (
    Walk,
    conclude,
    legacy_head,
    record_before,
    share,
    verify_chain,
    walk,
)
from flows.ledger import Ledger
from flows.ledger.schema import records, sop_versions

if TYPE_CHECKING:  # the HTML module (and Jinja) loads only when a report is drawn
    from flows.audit.html import Sections

#: below this many records (about 1,000 runs) one process is as fast: forking and handing over cost what a second
#: process saves (figures: docs/benchmarks.md)
MIN_RECORDS = 40_000

Half = tuple[list[tuple[Any, ...]], "Sections"]  # facts as tuples, the drawn sections


def forking_is_safe() -> bool:
    """Whether this process may fork a child that runs Python: it can fork, and it runs one thread.

    The threads are counted by the operating system where it says (``/proc/self/task`` on
    Linux), as CPython 3.12 does before it warns that a fork may deadlock: that also sees
    threads a C library started, which :func:`threading.active_count` does not. When this
    process runs one thread, no other can start between this answer and the fork.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc (macOS, BSD): the threads Python knows of are all we can count
        return True


def _processes(workers: int | None) -> int:
    """How many processes to use: ``workers`` (default: the cores, at most 2), one if forking is not safe."""
    wanted = workers if workers is not None else min(2, os.cpu_count() or 1)
    return wanted if wanted < 2 or forking_is_safe() else 1


def report_with_sections(ledger: Ledger, now: datetime, within: Window, *, sop: str | None = None,
                         sop_class: str | None = None, max_timelines: int | None = None,
                         workers: int | None = None, min_records: int = MIN_RECORDS,
                         progress: Callable[[float], None] | None = None,
                         drills: str = "include") -> tuple[ComplianceReport, Sections]:
    """The report and the sections of the first ``max_timelines`` runs (None: all), in start order.

    Two processes when ``workers`` (default: the cores, at most 2) allows, forking is safe
    (:func:`forking_is_safe`: no other thread runs) and the window spans at least
    ``min_records`` records; one otherwise, with the same answer. ``progress`` is told the
    share done now and then: of this process's half when there are two (the child's goes along).
    ``drills``: include them, exclude them or keep only them (see :func:`flows.audit.queries.load_runs`).
    """
    from flows.audit.html import Sections

    workers = _processes(workers)
    with ledger.read() as conn:  # the snapshot, and the records the window spans (a few primary-key lookups)
        # (min and max in one select would scan the table: as two subqueries each is one b-tree lookup)
        first, max_seq = conn.execute(sa.select(sa.select(sa.func.min(records.c.seq)).scalar_subquery(),
                                                sa.select(sa.func.max(records.c.seq)).scalar_subquery())).one()
        first, max_seq = first or 0, max_seq or 0
        low = _seq_from(conn, within.since, first, max_seq + 1) if within.since is not None else first
        high = _seq_from(conn, within.until, low, max_seq + 1) if within.until is not None else max_seq + 1
        if workers >= 2:
            # parse the pinned SOPs once, before the fork: the child inherits them (each process
            # would parse them itself, on the way to its first run); only when they are few, as
            # pinned_sop remembers 256
            texts = conn.execute(sa.select(sop_versions.c.hash, sop_versions.c.text).limit(201)).all()
            if len(texts) <= 200:
                outlines(dict(texts))  # type: ignore[arg-type]
    cut = (low + high) // 2

    def half(part: Part, keep: list[Any] | None = None, told: Callable[[float], None] | None = None) -> Half:
        reading: Callable[[int], None] | None = None
        drawing: Callable[[float], None] | None = None
        if told is not None:  # reading is about two thirds of a half's work, drawing the rest
            reading = share(lambda done: told(0.65 * done), part.first if part.first is not None else low,
                            part.stop if part.stop is not None else high)
            drawing = lambda done: told(0.65 + 0.35 * done)  # noqa: E731

        with paused_gc():
            with ledger.read() as conn:
                loaded = load_runs(conn, within=within, sop_id=sop, sop_class=sop_class, part=part, progress=reading,
                                   drills=drills)
            drawn = loaded if max_timelines is None else loaded[:max_timelines]
            done = [tuple(f) for f in run_facts(loaded, now)], Sections.draw(drawn, now, drawing)
            if keep is not None:  # the child: it exits as soon as it has handed its half over, freeing nothing
                keep.append(loaded)
            # else freed now, by reference counting: with the collector back on, its first pass
            # would walk every object of every run just before they go
            del loaded, drawn
        return done

    if workers < 2 or high - low < max(min_records, 2):
        facts, sections = half(Part(max_seq=max_seq), told=progress)
    else:
        later, kept = Part(first=cut, max_seq=max_seq), []
        child = _Child(lambda: half(later, kept), ledger)
        try:
            facts, sections = half(Part(stop=cut, max_seq=max_seq), told=progress)
            theirs = child.result()
        finally:
            child.reap()
        if theirs is None:  # the child failed (it printed why): do its half here
            theirs = half(later)
        facts, sections = facts + theirs[0], Sections(sections.blocks + theirs[1].blocks)  # start order
    with paused_gc():
        if max_timelines is not None and len(sections) > max_timelines:
            sections = sections.head(max_timelines)
        report = aggregate([RunFacts._make(f) for f in facts], now, within, sop=sop, sop_class=sop_class, drills=drills)
        del facts  # before the collector is back on (it would walk them first)
    return report, sections


def verify_ledger(ledger: Ledger, anchors: list[Anchor] | None = None, *, workers: int | None = None,
                  min_records: int = MIN_RECORDS, cut: int | None = None,
                  progress: Callable[[float], None] | None = None) -> Verification:
    """:func:`~flows.audit.verify.verify_chain` on two processes when ``workers`` (default: the
    cores, at most 2) allows, forking is safe (:func:`forking_is_safe`: no other thread runs)
    and the chain has at least ``min_records`` records; the same answer either way.

    The chain is cut at its middle ``seq`` (or at ``cut``): a forked child walks from the cut to the head
    (starting from the stored hash of the record before the cut, as the whole walk would
    stand there), the parent from the start to the cut (looking one record past it). The
    child's breaks count only if the parent's stretch has none; otherwise its records that
    do not match their own hash are suspects, as in one walk. Both read up to the head the
    parent saw first. If the child fails, the parent walks its stretch too.

    ``progress`` is told the share walked now and then: of the parent's stretch when there
    are two (the child's, as long, goes along at the same pace).
    """
    workers = _processes(workers)
    with ledger.read() as conn:
        if workers < 2:
            return verify_chain(conn, anchors, progress)
        head_seq, head_hash, count = head_of(conn)
        old = legacy_head(conn)  # the child walks half of the records written before lanes; the lanes, the parent
        first = conn.execute(sa.select(sa.func.min(records.c.seq)).where(records.c.chain.is_(None))).scalar() or 0
        if old - first < max(min_records, 2):
            return verify_chain(conn, anchors, progress)
        cut = cut if cut is not None else (first + old + 1) // 2
        before = record_before(conn, cut)

    def later() -> Walk:
        with ledger.read() as conn:
            return walk(conn, low=cut, after=before, head=old)

    child = _Child(later, ledger)
    try:
        with ledger.read() as conn:
            earlier = walk(conn, stop=cut, head=old, progress=share(progress, first, cut))
        theirs = child.result()
    finally:
        child.reap()
    if theirs is None:  # the child failed (it printed why): walk its stretch here
        theirs = later()
    with ledger.read() as conn:
        return conclude(conn, Verification(records=count, head_seq=head_seq, head_hash=head_hash), [earlier, theirs],
                        anchors)


def _seq_from(conn: Connection, instant: datetime, low: int, high: int) -> int:
    """The first seq in [low, high) whose record is at or after ``instant`` (high if none), by
    bisection over the primary key: records are written in time order. Only balances the halves."""
    at = at_column(conn)
    while low < high:
        middle = (low + high) // 2
        row = conn.execute(sa.select(records.c.seq, at).where(records.c.seq >= middle)
                           .order_by(records.c.seq).limit(1)).first()
        if row is None or row[0] >= high:
            high = middle
        elif record_time(row[1]) >= instant:
            high = middle
        else:
            low = row[0] + 1
    return low


class _Child:
    """``work`` run in a forked child, its result handed back through a file.

    The child says on a pipe when the file is complete, so the parent reads it while the
    child is still winding down (unmapping a large heap takes a while); :meth:`reap`
    collects the child's exit afterwards.
    """

    def __init__(self, work: Callable[[], Any], ledger: Ledger):
        fd, self.path = tempfile.mkstemp(prefix="sop-audit-", suffix=".pickle")
        self.done, said = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into the caller's code
            status = 1
            gc.disable()  # it exits when done: nothing to collect
            try:
                os.close(self.done)
                # one connection used by two processes corrupts it: drop (never close) the parent's
                ledger.engine.dispose(close=False)
                ledger.reader.dispose(close=False)
                with os.fdopen(fd, "wb") as out:
                    pickle.dump(work(), out, protocol=pickle.HIGHEST_PROTOCOL)
                os.write(said, b"1")
                status = 0
            except BaseException:  # noqa: BLE001 - the parent sees no "done" and does the work itself
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(fd)
        os.close(said)

    def result(self) -> Any:
        """The child's result once it is written (None if the child failed)."""
        if os.read(self.done, 1) != b"1":  # end of file: the child ended without writing it
            return None
        with open(self.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return pickle.loads(view)

    def reap(self) -> None:
        """Collect the child's exit and remove what it used."""
        os.close(self.done)
        os.waitpid(self.pid, 0)
        os.unlink(self.path)


__all__ = ["MIN_RECORDS", "forking_is_safe", "report_with_sections", "verify_ledger"]
