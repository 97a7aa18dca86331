"""The audit: what ran, who was told, who did what and when, every deadline, and whether to trust it.

Read-only over the ledger. Everything an auditor sees is rebuilt from the hash-chained
``records`` (see :mod:`flows.audit.model`), never from the engine's projections, so a
report is exactly as trustworthy as ``sop audit verify`` says the chain is. It writes
nothing and sends nothing.

Owns:

- :mod:`~flows.audit.scope`     what is asked: the window, the class; :class:`AuditError`
- :mod:`~flows.audit.queries`   which runs, read from the chain
- :mod:`~flows.audit.model`     a run as an auditor reads it; :mod:`~flows.audit.builder` folds its records into it;
  :mod:`~flows.audit.facts` each page, escalation and answer it holds
- :mod:`~flows.audit.verify`    recompute the chain, name the first broken record; what it finds and what to
  note down (the head, anchors) in :mod:`~flows.audit.verification`
- :mod:`~flows.audit.report`    SLA figures (per SOP, per class, late steps by role)
- :mod:`~flows.audit.parallel`  the report and the walk on two processes, only where forking is safe
- :mod:`~flows.audit.html`      the self-contained HTML report, with :mod:`~flows.audit.gantt` charts
- :mod:`~flows.audit.history`   which SOP texts ran when, with diffs
- :mod:`~flows.audit.silences`  silenced triggers: who silenced them, why, how many
- :mod:`~flows.audit.summary`, :mod:`~flows.audit.timeline`, :mod:`~flows.audit.export`
  one line per run, one run's whole story, JSON and CSV

:class:`Audit` is the one entry point the CLI (:mod:`flows.cli.audit`) and the API
(:mod:`flows.api.audit`, under ``/v1/audit`` for the auditor role) share.

May import: ``flows.ledger`` (the records, a read connection, the vocabulary of record
kinds and states) and ``flows.language`` (the pinned SOP texts, durations), plus SQLAlchemy
and Jinja2. Never the engine, ``flows.api``, ``flows.runtime`` or ``flows.cli`` (which call
it), Prefect or the triggers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flows.audit.actions import ActionLine, action_lines, check_groups
from flows.audit.history import SopHistory, sop_history
from flows.audit.model import RunAudit
from flows.audit.parallel import MIN_RECORDS, report_with_sections, verify_ledger
from flows.audit.queries import load_run, load_runs, paused_gc
from flows.audit.refusals import RefusedLine, refused_lines
from flows.audit.report import ComplianceReport, compliance_report
from flows.audit.scope import AuditError, Window, check_class, check_drills, check_sop, window
from flows.audit.silences import SilencedLine, SilenceLine, silence_lines, silenced_lines
from flows.audit.summary import RunLine, run_lines
from flows.audit.timeline import document
from flows.audit.verification import Anchor, Verification
from flows.ledger import Ledger
from flows.ledger.schema import records, runs


class Audit:
    """The audit of one ledger, as of its clock's now (open runs past due count as missed)."""

    def __init__(self, ledger: Ledger, now: datetime | None = None, sops: Iterable[str] = ()):
        self.ledger = ledger
        self._now = now
        #: the library's SOP ids: an SOP asked about may be one of them without a run yet (:meth:`check_sop`)
        self.sops = frozenset(sops)

    @classmethod
    def of(cls, engine: Any) -> Audit:
        """The audit of an engine's ledger, knowing its library's SOPs (an SOP without a run yet is no typo)."""
        return cls(engine.ledger, sops=engine.library.sops)

    def check_sop(self, sop: str | None) -> str | None:
        """``sop`` when it ran or is in the library; NotFound (field ``sop``) naming the closest for a typo."""
        if sop is None or sop in self.sops:
            return sop
        with self.ledger.read() as conn:
            ran = {row[0] for row in conn.execute(sa.select(runs.c.sop_id).distinct())}
        return check_sop(sop, ran, self.sops)

    def now(self) -> datetime:
        return self._now or self.ledger.clock.now()

    def window(self, since: str | None = None, until: str | None = None, zone: str = "UTC") -> Window:
        """Parse ``--since``/``--until`` (AuditError with a hint when they do not parse); a date or a time without
        an offset is ``zone``'s (the desk's: its reader's, as it shows times; the terminal's and the API's: UTC)."""
        return window(since, until, self.now(), zone)

    def runs(self, within: Window | None = None, *, sop: str | None = None, sop_class: str | None = None,
             full: bool = False, drills: str = "include") -> list[RunAudit]:
        """Runs in start order; ``drills``: ``include`` them, ``exclude`` them or keep ``only`` them."""
        sop = self.check_sop(sop)
        with self.ledger.read() as conn:
            return load_runs(conn, within=within, sop_id=sop, sop_class=check_class(sop_class), full=full,
                             drills=check_drills(drills))

    def lines(self, within: Window | None = None, *, sop: str | None = None, sop_class: str | None = None,
              drills: str = "include") -> list[RunLine]:
        """One line per run (``sop audit runs``), drills marked (``drill``)."""
        return run_lines(self.runs(within, sop=sop, sop_class=sop_class, drills=drills), self.now())

    def run(self, run_id: str) -> RunAudit:
        with self.ledger.read() as conn:
            return load_run(conn, run_id)

    def show(self, run_id: str) -> dict[str, Any]:
        """The whole story of one run (``sop audit show``)."""
        return document(self.run(run_id), self.now())

    def report(self, within: Window | None = None, *, sop: str | None = None, sop_class: str | None = None,
               drills: str = "include") -> tuple[ComplianceReport, list[RunAudit]]:
        """The compliance figures (with the silenced triggers), and the runs (for their timelines); ``drills`` as in
        :meth:`runs`."""
        with paused_gc():
            runs = self.runs(within, sop=sop, sop_class=sop_class, drills=drills)
            report = compliance_report(runs, self.now(), within, sop=sop, sop_class=sop_class,
                                       drills=check_drills(drills))
        report.silences = self.silences(within)
        return report, runs

    def report_with_sections(self, within: Window | None = None, *, sop: str | None = None,
                             sop_class: str | None = None, max_timelines: int | None = None,
                             workers: int | None = None, min_records: int = MIN_RECORDS,
                             progress: Callable[[float], None] | None = None,
                             drills: str = "include") -> tuple[ComplianceReport, list[Any]]:
        """The figures and each drawn run's chart, read on two processes where forking is safe
        (one thread in this process), else on one (see :mod:`flows.audit.parallel`); ``drills`` as in :meth:`runs`."""
        report, sections = report_with_sections(self.ledger, self.now(), within or Window(), sop=self.check_sop(sop),
                                                sop_class=check_class(sop_class), max_timelines=max_timelines,
                                                workers=workers, min_records=min_records, progress=progress,
                                                drills=check_drills(drills))
        report.silences = self.silences(within)
        return report, sections

    def verify(self, anchors: list[Anchor] | None = None, *, workers: int | None = None,
               min_records: int = MIN_RECORDS, progress: Callable[[float], None] | None = None) -> Verification:
        """Walk the hash chain, on two processes for a long one where forking is safe (one thread in
        this process; the API's threads get one process without asking), see
        :func:`flows.audit.parallel.verify_ledger`."""
        return verify_ledger(self.ledger, anchors, workers=workers, min_records=min_records, progress=progress)

    def touched(self, verification: Verification | None) -> dict[str, list[str]]:
        """The runs holding a record that does not check out (:attr:`Verification.unsound`), each with those records
        in words (``record 4224 edited``): where a listing of runs marks them. Empty for a chain that verifies."""
        unsound = verification.unsound if verification is not None else {}
        if not unsound:
            return {}
        with self.ledger.read() as conn:
            held = conn.execute(sa.select(records.c.seq, records.c.run_id).where(records.c.seq.in_(list(unsound)[:1000])
                                                                                 & records.c.run_id.is_not(None)))
            out: dict[str, list[str]] = {}
            for seq, run_id in sorted(held):
                out.setdefault(run_id, []).append(f"record {seq} {unsound[seq]}")
            return out

    def silences(self, within: Window | None = None) -> list[SilenceLine]:
        """Each silence with who made it, why, and how many triggers it silenced in the window (``sop audit report``)."""
        with self.ledger.read() as conn:
            return silence_lines(conn, within)

    def actions(self, within: Window | None = None, kinds: list[str] | None = None,
                zone: str = "UTC") -> list[ActionLine]:
        """What people did outside any run (sign-ins, on-call overrides, silences) in the window (``sop audit
        actions``); ``kinds``: words of :data:`flows.audit.actions.GROUPS`; the times in their words in ``zone``."""
        check_groups(kinds)
        with self.ledger.read() as conn:
            return action_lines(conn, within, kinds, zone)

    def silenced(self, within: Window | None = None) -> list[SilencedLine]:
        """Every trigger a silence kept from starting a run, in the window (``sop audit silenced``)."""
        with self.ledger.read() as conn:
            return silenced_lines(conn, within)

    def refused(self, within: Window | None = None) -> list[RefusedLine]:
        """Every signal an SOP's trigger matched but could not start, in the window (``sop audit refused``)."""
        with self.ledger.read() as conn:
            return refused_lines(conn, within)

    def history(self, sop_id: str, current_hash: str | None = None) -> SopHistory:
        with self.ledger.read() as conn:
            return sop_history(conn, sop_id, current_hash)


__all__ = ["ActionLine", "Anchor", "Audit", "AuditError", "ComplianceReport", "RunAudit", "RunLine", "SilenceLine", "SilencedLine",
           "SopHistory", "Verification", "Window"]
