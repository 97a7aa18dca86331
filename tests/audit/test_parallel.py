"""`sop audit report --html` reads and draws on two processes: the answer is the one process's, to the byte."""

from __future__ import annotations

from typing import Any

import pytest

from flows.audit import Audit, parallel
from flows.audit.html import render_html


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
def test_the_report_tells_how_far_it_is(audit: Audit, workers: int) -> None:
    told: list[float] = []
    expected = _html(audit, workers=1)
    report, charts = audit.report_with_sections(workers=workers, min_records=0, progress=told.append)
    assert (report.to_dict(), render_html(report, charts)) == expected  # the same report, told or not
    assert told and told == sorted(told) and told[-1] == 1.0  # reading, then drawing, to the end
