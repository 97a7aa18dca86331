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
