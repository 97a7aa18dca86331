"""A ledger of runs with exactly known timings, played once per session on an injected clock.

Real engine, real timers, real notifications (the local inbox; one person's contact is a
closed port, so some deliveries fail), real ledger (on each database): only time is steered. The
clock moves from one instant to the next and every timer fires at its own due instant,
so each figure of the audit can be computed by hand (see ``Scenario``'s docstring).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.clock import ManualClock
from flows.engine.paging import Pager
from flows.engine.timers import TimerService
from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.language.steps.human import HumanReport
from flows.ledger import Ledger
from tests.conftest import TestDatabase, sql_on

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: the instant the audit is taken: every run below has started, F is still open
NOW = T0 + timedelta(hours=7)
REFUSED_URL = "json://127.0.0.1:9/hook"  # nothing listens on the discard port: the delivery fails


class SyncPager(Pager):
    """The real pager, waited for: each page's delivery record is written at the instant it is sent."""

    def send(self, engine: Any, page: Any, view: Any = None) -> Any:
        future = super().send(engine, page, view)
        future.result(timeout=30)
        return future


class Story:
    """Drives the engine on the fake clock: every timer fires exactly at its due instant."""

    def __init__(self, engine: Engine, clock: ManualClock):
        self.engine, self.clock = engine, clock
        self.timers = TimerService(engine, name="audit-tests")

    def advance(self, to: datetime) -> None:
        self.timers.advance_to(to)

    def start(self, sop_id: str, at: datetime, *, speed: float = 1.0, initiator: str,
              trigger: dict[str, Any], **inputs: Any) -> RunScript:
        self.advance(at)
        result = self.engine.start(sop_id, inputs, initiator=initiator, trigger=trigger, speed=speed)
        return RunScript(self, result.run_id, at, speed)


@dataclass
class RunScript:
    """One run, played in SOP minutes from its start (converted to wall time by its speed)."""

    story: Story
    id: str
    start: datetime
    speed: float

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes) / self.speed

    def go(self, minutes: float) -> None:
        self.story.advance(self.at(minutes))

    def report(self, minutes: float, step: str, actor: str, *, outcome: str = "done", note: str = "",
               evidence: list[str] | None = None, **values: Any) -> None:
        self.go(minutes)
        self.story.engine.report(self.id, step, HumanReport(actor=actor, outcome=outcome, values=values, note=note,  # type: ignore[arg-type]
                                                       evidence=evidence or []))

    def automate(self, minutes: float, step: str, **outputs: Any) -> None:
        """The automation (a Prefect task in production) runs ``step`` at this instant."""
        self.go(minutes)
        engine = self.story.engine
        engine.mark_running(self.id, step)
        engine.complete(self.id, step, outputs)
        engine.advance(self.id)

    def cancel(self, minutes: float, reason: str, actor: str) -> None:
        self.go(minutes)
        self.story.engine.cancel(self.id, reason, actor)


@dataclass
class Scenario:
    """Six runs whose every figure is known (SOP minutes from each run's start).

    audit-incident (outage, deadline 1h; triage 10m → fix 30m → review 10m; ladder: remind the
    assignee at 50%, tell the lead at 100%):

    - A, manual by li-wei: triage 4, fix 20 (reminder 19), review 24 → 24m, met, 1 escalation
    - B, alert: triage 12 (reminder 5, lead 10), fix 50 (27, 42), review 54 → 54m, met, 4
      escalations, triage and fix late
    - C, drill at speed 60: triage 6 (5), fix 41 (21, 36), review 65 (46, 51) → 65m, missed,
      5 escalations, fix and review late
    - F, manual, still open at NOW: triage never reported (5, 10) → missed, 2 escalations

    audit-routine (routine, deadline 2h; announce (automated) → prepare 30m → sign-off 30m by
    two approvers; no ladder):

    - D, on text v1: prepare 10, one approval at 20, cancelled at 25 (deadline n/a)
    - E, on text v2 (prepare's due became 45m): prepare 10, approvals 15 and 50 → 50m, met;
      sign-off late
    """

    root: Path
    url: str
    runs: dict[str, str] = field(default_factory=dict)
    now: datetime = NOW


def _play(root: Path, url: str) -> Scenario:
    clock = ManualClock(T0 - timedelta(minutes=1))
    ledger = Ledger(url, clock)
    ledger.migrate()
    env = {**os.environ, "TOM_BECKER_URL": REFUSED_URL}
    from notifications import Dispatcher

    def engine_for(library: Any) -> Engine:
        dispatcher = Dispatcher(workers=4, timeout=3.0, retries=0, inbox_dir=root / "var" / "inbox", env=env)
        return Engine(library, ledger, pager=SyncPager(library.site, ledger, dispatcher=dispatcher), clock=clock)

    engine = engine_for(load_library(root))
    story = Story(engine, clock)
    out = Scenario(root=root, url=url)
    hour = timedelta(hours=1)

    a = story.start("audit-incident", T0, initiator="li-wei", trigger={"kind": "manual", "by": "li-wei"})
    a.report(4, "triage", "zhao-lei", severity="high", evidence=["https://grafana.example/d/errors"],
             note="error rate 12% on checkout")
    a.report(20, "fix", "zhao-lei", change="rolled back release 2026.03.1")
    a.report(24, "review", "tom-becker", note="rollback confirmed, error rate back to 0.1%")

    b = story.start("audit-incident", T0 + hour, initiator="alertmanager",
                    trigger={"kind": "alert", "alertname": "HighErrorRate", "labels": {"service": "checkout"}})
    b.report(12, "triage", "kenji-sato", severity="high", evidence=["https://grafana.example/d/db"])
    b.report(50, "fix", "zhao-lei", change="failed over the primary database")
    b.report(54, "review", "tom-becker")

    c = story.start("audit-incident", T0 + 3 * hour, speed=60, initiator="drill",
                    trigger={"kind": "drill", "late": ["fix", "review"]})
    c.report(6, "triage", "zhao-lei", severity="low", evidence=["drill://evidence"])
    c.report(41, "fix", "zhao-lei", change="drill")
    c.report(65, "review", "tom-becker", note="drill")

    d = story.start("audit-routine", T0 + 3.5 * hour, initiator="tom-becker",
                    trigger={"kind": "manual", "by": "tom-becker"})
    d.automate(0, "announce")
    d.report(10, "prepare", "priya-nair", rows=120)
    d.report(20, "sign-off", "zhang-min", note="looks right")
    d.cancel(25, "change window closed", "tom-becker")

    routine = root / "sops" / "audit-routine.yaml"
    routine.write_text(routine.read_text().replace("version: 1", "version: 2").replace(
        "    assignee: data-analyst\n    due: 30m",
        "    assignee: data-analyst\n    description: Export the rows the change touches.\n    due: 45m"))
    story.engine = engine_for(load_library(root))
    story.timers.engine = story.engine

    e = story.start("audit-routine", T0 + 4 * hour, initiator="scheduler",
                    trigger={"kind": "schedule", "schedule": "0 13 * * MON"})
    e.automate(0, "announce")
    e.report(10, "prepare", "priya-nair", rows=80)
    e.report(15, "sign-off", "zhang-min")
    e.report(50, "sign-off", "guo-jing", note="approved after the data check")

    f = story.start("audit-incident", T0 + 5 * hour, initiator="li-wei", trigger={"kind": "manual", "by": "li-wei"})
    story.advance(NOW)

    out.runs = {"A": a.id, "B": b.id, "C": c.id, "D": d.id, "E": e.id, "F": f.id}
    for eng in {id(engine): engine, id(story.engine): story.engine}.values():
        eng.pager.close()
    ledger.dispose()
    return out


#: the scenario played on each database kind (pytest would play it again at each change of kind: tests/conftest.py's
#: ``_DATABASES`` says when)
_PLAYED: dict[str, Scenario] = {}


@pytest.fixture(scope="session")
def scenario(repo_root: Path, tmp_path_factory: pytest.TempPathFactory, database: TestDatabase) -> Scenario:
    """The six runs, played once per database; tests that change the ledger work on a copy (``ledger_copy``)."""
    if database.kind not in _PLAYED:
        root = tmp_path_factory.mktemp("audit-project")
        shutil.copytree(repo_root / "config", root / "config")
        shutil.copytree(HERE / "sops", root / "sops")
        (root / "var").mkdir()
        _PLAYED[database.kind] = _play(root, database.url_at(root / "var" / "ledger.db"))
    return _PLAYED[database.kind]


@pytest.fixture
def ledger_copy(scenario: Scenario, tmp_path: Path, database: TestDatabase) -> str:
    """The URL of a copy of the scenario's ledger (the file; a database made from it), free to tamper with, its
    records as a ledger written before lanes has them (one chain in seq order: :func:`written_before_lanes`). The
    stories of tampering by seq are about those; lanes have theirs (tests/audit/test_verify_lanes.py)."""
    url = database.copy(scenario.url, tmp_path / "ledger.db")
    written_before_lanes(url)
    return url


def written_before_lanes(url: str) -> None:
    """Rewrite the ledger's records as the ledger wrote them before lanes (migration 0013 leaves an
    older ledger so): no lane, one chain in seq order, each record hashing its seq and fields only. Seqs are
    renumbered 1, 2, 3… as the single writer of those days took them (on PostgreSQL, lanes' writers take
    seqs from a sequence a few at a time: gaps, which a chain in seq order reads as deletions)."""
    from flows.ledger import GENESIS, record_hash

    [rows] = sql_on(url, ("SELECT seq, at, run_id, step_id, kind, actor, data FROM records ORDER BY seq", ()))
    prev, updates = GENESIS, []
    for seq, row in enumerate(rows, start=1):  # ascending: each new seq is free (its own, or one moved from)
        at = row["at"] if isinstance(row["at"], datetime) else datetime.fromisoformat(row["at"])
        digest = record_hash(prev, seq, at, row["run_id"], row["step_id"], row["kind"], row["actor"], row["data"])
        updates.append(("UPDATE records SET seq = ?, chain = NULL, pos = NULL, prev_hash = ?, hash = ? WHERE seq = ?",
                        (seq, prev, digest, row["seq"])))
        prev = digest
    if updates:
        sql_on(url, *updates)


@pytest.fixture
def audit(scenario: Scenario) -> Iterator[Any]:
    """The audit of the scenario's ledger, as of NOW."""
    from flows.audit import Audit

    ledger = Ledger(scenario.url, ManualClock(scenario.now))
    yield Audit(ledger)
    ledger.dispose()


@pytest.fixture
def fork_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two-process path taken even if this test process runs other threads.

    Alone, ``pytest tests/audit`` runs one thread and the audit forks by itself; in the
    whole suite the API tests' uvicorn thread lives for the session, and the audit would
    (rightly) stay on one process. The children here touch no lock that thread holds.
    """
    from flows.audit import parallel

    monkeypatch.setattr(parallel, "forking_is_safe", lambda: True)


# --- tampering with a copy of the ledger file, as someone with the file and a shell would ----------


def tamper(url: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run ``statements`` on the ledger in one transaction, with sqlite3 or psycopg as an intruder would."""
    sql_on(url, *statements)


def record_row(url: str, seq: int) -> dict[str, Any]:
    """Record ``seq`` as stored, column by column (``at`` as the ISO text it hashes as)."""
    [[row]] = sql_on(url, ("SELECT * FROM records WHERE seq = ?", (seq,)))
    if isinstance(row["at"], datetime):
        row["at"] = row["at"].isoformat()
    return row


def renumber(above: int, by: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Statements that move every record after ``above`` by ``by`` (two steps: seq is the key)."""
    return [("UPDATE records SET seq = seq + 1000000 WHERE seq > ?", (above,)),
            ("UPDATE records SET seq = seq - 1000000 + ? WHERE seq > 1000000", (by,))]
