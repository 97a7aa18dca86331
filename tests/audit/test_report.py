"""An auditor asks how well deadlines were kept: the figures over runs with known timings are exact.

The six runs and every instant in them are listed in ``Scenario``'s docstring (conftest);
each expected figure below is worked out from that list by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.audit import Audit
from flows.audit.export import from_csv, to_csv
from flows.audit.report import COMPLIANCE_COLUMNS, Compliance, ComplianceReport
from tests.audit.conftest import T0, Scenario

M = 60.0  # seconds in a minute of SOP time


def _row(rows: list[Compliance], key: str) -> Compliance:
    return next(r for r in rows if r.key == key)


def test_incident_figures_per_sop(audit: Audit) -> None:
    report, _ = audit.report()
    incident = _row(report.by_sop, "audit-incident")
    # A met (24m), B met (54m), C missed (65m > 1h, a drill at ×60), F open past its deadline
    assert (incident.runs, incident.finished, incident.open, incident.cancelled) == (4, 3, 1, 0)
    assert (incident.met, incident.missed, incident.on_time_pct) == (2, 2, 50.0)
    # first assignment → first report: A 4m, B 12m, C 6m (SOP time, though C took 6 real seconds); F never
    assert (incident.tta_median_s, incident.tta_p90_s, incident.unacknowledged) == (6 * M, 12 * M, 1)
    assert (incident.ttc_median_s, incident.ttc_p90_s) == (54 * M, 65 * M)
    # escalations: A 1, B 4, C 5, F 2
    assert (incident.escalations, incident.escalations_per_run) == (12, 3.0)
    # steps with a due and a verdict: 3 + 3 + 3 + F's triage; late: B triage, B fix, C fix, C review, F triage
    assert (incident.timed_steps, incident.late_steps, incident.late_pct) == (10, 5, 50.0)


def test_routine_figures_leave_the_cancelled_run_out_of_on_time_and_completion(audit: Audit) -> None:
    report, _ = audit.report()
    routine = _row(report.by_sop, "audit-routine")
    assert (routine.runs, routine.finished, routine.cancelled) == (2, 1, 1)
    assert (routine.met, routine.missed, routine.on_time_pct) == (1, 0, 100.0)  # D cancelled before its deadline: n/a
    assert (routine.tta_median_s, routine.ttc_median_s, routine.ttc_p90_s) == (10 * M, 50 * M, 50 * M)
    assert (routine.escalations, routine.escalations_per_run) == (0, 0.0)
    # D prepare met, D sign-off cancelled before due (n/a), E prepare met, E sign-off late (50m > 10m + 30m)
    assert (routine.timed_steps, routine.late_steps, routine.late_pct) == (3, 1, 33.3)


def test_per_class_and_overall(audit: Audit) -> None:
    report, _ = audit.report()
    assert [r.key for r in report.by_class] == ["outage", "routine"]  # in priority order
    assert _row(report.by_class, "outage").on_time_pct == 50.0
    overall = report.overall
    assert (overall.runs, overall.met, overall.missed, overall.on_time_pct) == (6, 3, 2, 60.0)
    # TTA 4, 12, 6, 10, 10 → median 10, p90 (nearest rank 5 of 5) 12
    assert (overall.tta_median_s, overall.tta_p90_s) == (10 * M, 12 * M)
    # TTC 24, 54, 65, 50 → median (50 + 54) / 2 = 52, p90 (rank 4 of 4) 65
    assert (overall.ttc_median_s, overall.ttc_p90_s) == (52 * M, 65 * M)
    assert (overall.escalations_per_run, overall.timed_steps, overall.late_steps) == (2.0, 13, 6)


def test_late_steps_by_role(audit: Audit) -> None:
    report, _ = audit.report()
    roles = {r.key: (r.timed_steps, r.late_steps, r.late_pct) for r in report.by_role}
    assert roles == {"sre-oncall": (7, 4, 57.1), "sre-lead": (3, 1, 33.3),
                     "data-analyst": (2, 0, 0.0), "growth-lead": (1, 1, 100.0)}


def test_a_window_and_a_class_narrow_the_runs(audit: Audit) -> None:
    morning = audit.window("2026-03-02T09:00", "2026-03-02T12:00")  # A and B
    report, runs = audit.report(morning)
    assert [r.sop for r in report.runs] == ["audit-incident"] * 2
    assert report.overall.on_time_pct == 100.0
    _, routine = audit.report(sop_class="routine")
    assert {r.sop_id for r in routine} == {"audit-routine"}
    assert audit.report(audit.window("2026-03-03", None))[0].overall.runs == 0


def test_run_lines_say_what_ran_and_how_it_ended(audit: Audit, scenario: Scenario) -> None:
    lines = {line.run: line for line in audit.lines()}
    a, c, d, e, f = (lines[scenario.runs[k]] for k in "ACDEF")
    assert (a.trigger, a.started_at, a.outcome, a.deadline, a.escalations) == ("manual by li-wei", T0, "done", "met", 1)
    assert (c.trigger, c.speed, c.duration_s, c.deadline) == ("drill", 60.0, 65 * M, "missed")
    assert (d.outcome, d.deadline, d.version) == ("cancelled", "n/a", "1")
    assert (e.trigger, e.version) == ("schedule 0 13 * * MON by scheduler", "2")
    assert (f.outcome, f.ended_at, f.deadline) == ("open", None, "missed")
    assert lines[scenario.runs["B"]].trigger == "alert HighErrorRate by alertmanager"


def test_the_cli_report_writes_csv_and_json_that_read_back_to_the_same_figures(
        sop: Any, scenario: Scenario, audit: Audit, tmp_path: Path) -> None:
    done = sop("audit", "report", "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json"),
               env={"SOP_DATABASE_URL": scenario.url})
    assert done.returncode == 0, done.stderr
    assert "audit-incident" in done.stdout and "57.1%" in done.stdout  # the terminal tables
    expected, _ = audit.report()

    rows = from_csv((tmp_path / "r.csv").read_text(), Compliance)
    assert rows == expected.rows
    assert to_csv(rows, COMPLIANCE_COLUMNS) == (tmp_path / "r.csv").read_text()

    exported = ComplianceReport.from_dict(json.loads((tmp_path / "r.json").read_text()))
    assert exported.rows == expected.rows
    assert [line.run for line in exported.runs] == [line.run for line in expected.runs]
    assert exported.runs[0] == expected.runs[0]
    assert "time_to_acknowledge" in json.loads((tmp_path / "r.json").read_text())["definitions"]


def test_on_a_narrow_terminal_no_sop_name_or_figure_is_cut(sop: Any, scenario: Scenario, audit: Audit) -> None:
    done = sop("audit", "report", env={"SOP_DATABASE_URL": scenario.url, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout  # nothing ellipsized: a figure too wide for its column wraps
    expected, _ = audit.report()
    for row in expected.by_sop + expected.by_class:
        assert f" {row.key} " in done.stdout  # whole, on one line


def test_a_bad_window_or_class_is_refused_with_a_hint(sop: Any, scenario: Scenario) -> None:
    env = {"SOP_DATABASE_URL": scenario.url}
    done = sop("audit", "report", "--since", "last tuesday", env=env)
    assert done.returncode == 1
    assert "`last tuesday` is neither a date, a time nor a duration" in done.stderr
    assert "hint: write 2026-03-01" in done.stderr
    for bad in (("--since", "2026-02-30"), ("--until", "2026-12-32")):  # a date's shape, no such day
        done = sop("audit", "report", *bad, env=env)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"`{bad[1]}` is not a day of the calendar" in done.stderr
    assert sop("audit", "runs", "--until", "9999-12-31", env=env).returncode == 0  # the last day there is
    done = sop("audit", "report", "--class", "urgent", env=env)
    assert "unknown class `urgent`" in done.stderr and "complaint, outage, policy, routine" in done.stderr
    done = sop("audit", "report", "--since", "2026-03-05", "--until", "2026-03-01", env=env)
    assert "is not before --until" in done.stderr
    done = sop("audit", "report", "--timelines", "-3", "--html", "/tmp/never.html", env=env)  # not "all but 3"
    assert done.returncode == 2 and "--timelines" in done.stderr and "greater than or equal to 0" in done.stderr


def test_the_fast_read_for_reports_agrees_with_the_full_read(audit: Audit) -> None:
    """Reports decode only what figures need (at 10,000 runs it matters); they must not see less."""
    from flows.audit.queries import load_runs
    from flows.audit.report import compliance_report

    with audit.ledger.read() as conn:
        fast, full = load_runs(conn), load_runs(conn, full=True)
    now = audit.now()
    assert compliance_report(fast, now).rows == compliance_report(full, now).rows
    assert compliance_report(fast, now).runs == compliance_report(full, now).runs
    for a, b in zip(fast, full, strict=True):
        assert [(s.state, s.ready_at, s.due_at, s.finished_at, s.deadline(now), [e.at for e in s.escalations])
                for s in a.steps.values()] == [
               (s.state, s.ready_at, s.due_at, s.finished_at, s.deadline(now), [e.at for e in s.escalations])
               for s in b.steps.values()]


def test_the_fast_read_decodes_reports_whose_data_does_not_start_with_a_verdict(ledger: Any) -> None:
    """The fast read takes a report's verdict from the first bytes of its data; any other shape
    (no verdict, a verdict that is not true/false/null) is decoded whole, as the full read does."""
    from datetime import timedelta

    from flows.audit.queries import load_runs

    with ledger.transaction() as tx:
        for n, (first, second) in enumerate([({"note": "no verdict"}, {"deadline_met": True, "note": "ok"}),
                                             ({"deadline_met": 0}, {"deadline_met": None})]):
            run_id = f"run-{n}"
            tx.append("run_started", run_id, at=T0, sop=f"s{n}", sop_hash="", speed=1)
            for step, data in (("a", first), ("b", second)):
                tx.append("step_assigned", run_id, step, at=T0, due_at=str(T0 + timedelta(minutes=5)))
                tx.append("step_done", run_id, step, actor="li-wei", at=T0 + timedelta(minutes=9), **data)
    with ledger.read() as conn:
        fast, full = load_runs(conn), load_runs(conn, full=True)
    now = T0 + timedelta(hours=1)
    seen = [[(s.state, s.actor, s.deadline_met_recorded, s.deadline(now)) for s in run.steps.values()] for run in fast]
    assert seen == [[("done", "li-wei", None, "missed"), ("done", "li-wei", True, "met")],
                    [("done", "li-wei", 0, "missed"), ("done", "li-wei", None, "missed")]]
    assert seen == [[(s.state, s.actor, s.deadline_met_recorded, s.deadline(now)) for s in run.steps.values()]
                    for run in full]


def test_an_export_is_written_whole_or_not_at_all(sop: Any, scenario: Scenario, tmp_path: Path) -> None:
    import typer

    from flows.cli.audit_files import write_export

    done = sop("audit", "report", "--csv", str(tmp_path), env={"SOP_DATABASE_URL": scenario.url})
    assert done.returncode == 1 and f"cannot write {tmp_path}: it is a folder" in done.stderr

    earlier = tmp_path / "report.html"
    earlier.write_text("last quarter's report")
    with pytest.raises(typer.Exit):  # the write fails half-way (here: text that cannot be encoded)
        write_export(str(earlier), "<html>" + "x" * 200_000 + "\ud800")
    assert earlier.read_text() == "last quarter's report"  # not half-overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # and nothing left beside it
    write_export(str(earlier), "this quarter's report")
    assert earlier.read_text() == "this quarter's report"


def test_an_export_keeps_links_permissions_and_pipes_working(tmp_path: Path) -> None:
    import os
    import stat
    import threading

    from flows.cli.audit_files import write_export

    real = tmp_path / "real.html"
    real.write_text("old")
    real.chmod(0o600)  # kept private by its owner
    link = tmp_path / "latest.html"
    link.symlink_to(real)
    write_export(str(link), "new")
    assert link.is_symlink() and real.read_text() == "new"  # the link's file was replaced, the link kept
    assert stat.S_IMODE(real.stat().st_mode) == 0o600

    long_name = tmp_path / ("r" * 240 + ".csv")  # a long name: the file beside it must still fit
    write_export(str(long_name), "a,b\n")
    assert long_name.read_text() == "a,b\n"

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a named pipe (or /dev/stdout, /dev/fd/N): written to as a stream, never replaced
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_export(str(fifo), "streamed")
    reader.join(10)
    assert got == ["streamed"] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")) == []


def test_figures_and_the_window_read_as_a_person_reads_them() -> None:
    from datetime import UTC, datetime

    from flows.audit.report import _Tally
    from flows.audit.scope import Window

    tally = _Tally("sop", "x")
    tally.tta = [391.78103999999996, 12.1000000001]
    row = tally.done()
    assert (row.tta_median_s, row.tta_p90_s) == (201.941, 391.781)  # to the millisecond, not a float's noise
    said = Window(datetime(2026, 12, 5, 7, 36, 34, 501671, tzinfo=UTC), None).describe()
    assert said == "runs started from 2026-12-05 07:36:34 UTC until now (exclusive)"
    assert Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)).describe() == \
        "runs started from 2026-03-01 00:00 UTC until 2026-04-01 00:00 UTC (exclusive)"
