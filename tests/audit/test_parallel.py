"""`sop audit report --html` reads and draws on two processes: the answer is the one process's, to the byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.audit import Audit, parallel
from flows.audit.html import render_html
from tests.conftest import TestDatabase

pytestmark = pytest.mark.usefixtures("fork_allowed")  # these test the two-process path: see the fixture


def _html(audit: Audit, **options: Any) -> tuple[dict[str, Any], str]:
    report, charts = audit.report_with_sections(**options)
    return report.to_dict(), render_html(report, charts)


def test_two_processes_give_the_same_report_and_html_as_one(audit: Audit) -> None:
    one = _html(audit, workers=1)
    two = _html(audit, workers=2, min_records=0)
    assert two == one
    report, charts = audit.report_with_sections(workers=2, min_records=0)
    assert [line.run for line in report.runs] == [line.run for line in audit.report()[0].runs]  # start order
    assert len(charts) == len(report.runs) > 1
    assert all(f'id="run-{line.run}"' in chart for line, chart in zip(report.runs, charts, strict=True))


def test_the_first_n_timelines_only(audit: Audit) -> None:
    report, charts = audit.report_with_sections(workers=2, min_records=0, max_timelines=2)
    assert len(charts) == 2 and [f'id="run-{line.run}"' in c for line, c in zip(report.runs[:2], charts, strict=True)] == [True, True]
    html = render_html(report, charts)
    assert f"{len(report.runs) - 2} more run(s) not drawn" in html


def test_if_the_child_fails_the_parent_does_its_half(audit: Audit, monkeypatch: pytest.MonkeyPatch,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    expected = _html(audit, workers=1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full (simulated in the child)")

    monkeypatch.setattr(parallel.pickle, "dump", broken)  # only the child writes a pickle
    assert _html(audit, workers=2, min_records=0) == expected
    assert "disk full (simulated in the child)" in capfd.readouterr().err  # the child said why


@pytest.mark.parametrize("by_id", [500, 0])  # the runs open at the cut looked up by id, or by the part's starts
def test_any_cut_splits_the_runs_into_two_parts_that_add_up_to_all(audit: Audit, by_id: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Wherever the cut falls (inside a run, before a run still open at the end), the part before it
    and the part from it on read every run as one read does: each run once, every record of it."""
    import sqlalchemy as sa

    from flows.audit import queries
    from flows.audit.queries import Part, load_runs
    from flows.ledger.schema import records

    monkeypatch.setattr(queries, "OPEN_BY_ID", by_id)

    with audit.ledger.read() as conn:
        seqs = list(conn.execute(sa.select(records.c.seq).order_by(records.c.seq)).scalars())
        whole = load_runs(conn)
        assert any(run.status == "open" for run in whole)  # a run still open at the end is among them
        for cut in seqs[1:]:
            before = load_runs(conn, part=Part(stop=cut, max_seq=seqs[-1]))
            after = load_runs(conn, part=Part(first=cut, max_seq=seqs[-1]))
            assert before + after == whole, f"cut at seq {cut}"


@pytest.mark.parametrize("workers", [1, 2])
def test_the_report_tells_how_far_it_is(audit: Audit, workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.audit import queries

    chunks = queries._chunks
    monkeypatch.setattr(queries, "_chunks", lambda conn, query, size=2: chunks(conn, query, 2))  # a word every 2 records
    told: list[float] = []
    expected = _html(audit, workers=1)
    report, charts = audit.report_with_sections(workers=workers, min_records=0, progress=told.append)
    assert (report.to_dict(), render_html(report, charts)) == expected  # the same report, told or not
    assert len(told) > 10 and told == sorted(told) and told[-1] == 1.0  # reading, then drawing, to the end


def test_the_reports_progress_never_goes_back_when_runs_overlap(repo_root: Path, tmp_path: Path, database: TestDatabase,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run's late record ends a chunk of the read: the run it belongs to started long before
    the last one told. The bar must hold its place, not jump back."""
    import os
    import shutil
    from datetime import timedelta

    from flows.audit import queries
    from flows.clock import ManualClock
    from flows.engine.transitions import Engine
    from flows.language.library import load_library
    from flows.ledger import Ledger
    from notifications import Dispatcher
    from tests.audit.conftest import HERE, NOW, REFUSED_URL, T0, Story, SyncPager

    shutil.copytree(repo_root / "config", tmp_path / "config")
    shutil.copytree(HERE / "sops", tmp_path / "sops")
    clock = ManualClock(T0 - timedelta(minutes=1))
    url = database.url_at(tmp_path / "ledger.db")
    ledger = Ledger(url, clock)
    ledger.migrate()
    library = load_library(tmp_path)
    dispatcher = Dispatcher(workers=2, timeout=3.0, retries=0, inbox_dir=tmp_path / "inbox",
                            env={**os.environ, "TOM_BECKER_URL": REFUSED_URL})
    engine = Engine(library, ledger, pager=SyncPager(library.site, ledger, dispatcher=dispatcher), clock=clock)
    story = Story(engine, clock)
    long = story.start("audit-incident", T0, initiator="li-wei", trigger={"kind": "manual", "by": "li-wei"})
    for i in range(4):
        story.start("audit-routine", T0 + timedelta(minutes=2 + 3 * i), initiator="x", trigger={"kind": "manual", "by": "x"})
    long.report(30, "triage", "zhao-lei", severity="high", evidence=["https://e"])  # the first run's, late in the chain
    story.advance(NOW)
    engine.pager.close()

    chunks = queries._chunks
    monkeypatch.setattr(queries, "_chunks", lambda conn, query, size=5: chunks(conn, query, 5))
    told: list[float] = []
    Audit(Ledger(url, ManualClock(NOW))).report_with_sections(
        workers=1, min_records=0, progress=told.append)
    assert len(told) > 3 and told == sorted(told) and told[-1] == 1.0
