"""An auditor leaves drills out of the SLA figures (or looks at them alone): run C of the scenario is a drill.

Without C, audit-incident has A (met, 24m), B (met, 54m) and F (open past its deadline:
missed); the figures below are worked out from ``Scenario``'s docstring by hand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.audit import Audit, AuditError
from flows.audit.export import from_csv
from flows.audit.report import Compliance
from tests.audit.conftest import Scenario

M = 60.0


def _row(rows: list[Compliance], key: str) -> Compliance:
    return next(r for r in rows if r.key == key)


def test_drills_count_by_default_and_can_be_left_out(audit: Audit) -> None:
    everything, _ = audit.report()
    assert (everything.overall.runs, everything.overall.met, everything.overall.missed) == (6, 3, 2)
    assert everything.drills == "include"

    real, runs = audit.report(drills="exclude")
    assert [run.is_drill for run in runs] == [False] * 5
    incident = _row(real.by_sop, "audit-incident")
    assert (incident.runs, incident.finished, incident.open) == (3, 2, 1)
    assert (incident.met, incident.missed, incident.on_time_pct) == (2, 1, 66.7)  # C's miss is gone
    assert (incident.tta_median_s, incident.tta_p90_s, incident.unacknowledged) == (8 * M, 12 * M, 1)  # A 4m, B 12m
    assert (incident.escalations, incident.escalations_per_run) == (7, 2.33)  # A 1, B 4, F 2
    assert (real.overall.runs, real.overall.met, real.overall.missed, real.overall.on_time_pct) == (5, 3, 1, 75.0)
    assert real.drills == "exclude" and real.to_dict()["drills"] == "exclude"


def test_drills_alone(audit: Audit, scenario: Scenario) -> None:
    drills, runs = audit.report(drills="only")
    assert [run.id for run in runs] == [scenario.runs["C"]]
    assert (drills.overall.runs, drills.overall.met, drills.overall.missed, drills.overall.on_time_pct) == (1, 0, 1, 0.0)


def test_the_runs_mark_drills(audit: Audit, scenario: Scenario) -> None:
    lines = audit.lines()
    assert [line.run for line in lines if line.drill] == [scenario.runs["C"]]
    assert [line.run for line in audit.lines(drills="only")] == [scenario.runs["C"]]


def test_an_unknown_choice_says_which_there_are(audit: Audit) -> None:
    with pytest.raises(AuditError) as refused:
        audit.report(drills="skip")
    assert refused.value.message == "unknown drills choice `skip`"
    assert "exclude (leave them out)" in (refused.value.hint or "")


def _cli(sop: Any, scenario: Scenario, *args: str) -> Any:
    return sop("audit", *args, env={"SOP_DATABASE_URL": scenario.url})


def test_the_command_leaves_drills_out_of_the_csv_and_says_so(sop: Any, scenario: Scenario) -> None:
    done = _cli(sop, scenario, "report", "--drills", "exclude", "--csv", "-")
    assert done.returncode == 0, done.stderr
    rows = from_csv(done.stdout, Compliance)
    assert (_row(rows, "audit-incident").runs, _row(rows, "audit-incident").on_time_pct) == (3, 66.7)
    with_drills = from_csv(_cli(sop, scenario, "report", "--csv", "-").stdout, Compliance)
    assert (_row(with_drills, "audit-incident").runs, _row(with_drills, "audit-incident").on_time_pct) == (4, 50.0)

    table = _cli(sop, scenario, "report", "--drills", "exclude")
    assert "drills left out" in table.stdout
    # by default the drill counts, and the report's title says so (an auditor reads the figures as real runs')
    counted = " ".join(_cli(sop, scenario, "report").stdout.split())
    assert "1 drill counted with the real runs (--drills exclude leaves them out)" in counted
    typo = _cli(sop, scenario, "runs", "--sop", "audit-incidnt")
    assert typo.returncode == 1 and "no SOP `audit-incidnt`" in typo.stderr and "did you mean audit-incident" in typo.stderr
    wrong = _cli(sop, scenario, "report", "--drills", "skip")
    assert wrong.returncode != 0 and "unknown drills choice `skip`" in wrong.stderr + wrong.stdout


def test_the_command_marks_drills_in_the_runs(sop: Any, scenario: Scenario) -> None:
    listed = json.loads(_cli(sop, scenario, "runs", "--json").stdout)
    assert {r["run"]: r["drill"] for r in listed} == {run_id: key == "C" for key, run_id in scenario.runs.items()}
    table = _cli(sop, scenario, "runs").stdout
    line = next(text for text in table.splitlines() if scenario.runs["C"] in text)
    assert "drill ×60" in line
    assert "drill" not in next(text for text in table.splitlines() if scenario.runs["A"] in text)


@pytest.mark.usefixtures("fork_allowed")
@pytest.mark.parametrize("drills", ["exclude", "only"])
def test_two_processes_leave_out_the_same_drills_as_one(audit: Audit, drills: str) -> None:
    one, one_charts = audit.report_with_sections(workers=1, drills=drills)
    two, two_charts = audit.report_with_sections(workers=2, min_records=0, drills=drills)
    assert two.to_dict() == one.to_dict() == audit.report(drills=drills)[0].to_dict()
    assert list(two_charts) == list(one_charts) and len(two_charts) == len(two.runs)
