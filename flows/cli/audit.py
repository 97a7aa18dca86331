"""``sop audit …``: for auditors. What ran, who was told, who did what and when, and whether to trust it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from flows.audit import Audit, AuditError
from flows.audit.export import to_csv, to_json
from flows.audit.refusals import REFUSED_COLUMNS
from flows.audit.report import COMPLIANCE_COLUMNS
from flows.audit.silences import SILENCED_COLUMNS
from flows.audit.summary import RUN_COLUMNS
from flows.audit.verification import Anchor
from flows.cli import app
from flows.cli.audit_files import FileOrStdout, say_written, write_export, write_exports
from flows.cli.audit_story import print_document
from flows.cli.audit_views import (
    Times,
    print_actions,
    print_compliance,
    print_follow_ups,
    print_history,
    print_refused,
    print_runs,
    print_silenced,
    print_silences,
    print_verification,
    progress_bar,
)
from flows.cli.common import console, err_console, fail, library

audit = typer.Typer(name="audit", no_args_is_help=True,
                    help="For auditors: runs, one run's whole timeline, SLA reports, silenced and refused triggers, chain verification, SOP history.")
app.add_typer(audit, name="audit")

Since = Annotated[str | None, typer.Option("--since", help="runs started from: 2026-03-01, an ISO time (both in the "
                                                            "zone the table shows: the site's, UTC with --utc, unless "
                                                            "it has an offset) or 7d (7 days ago)")]
Until = Annotated[str | None, typer.Option("--until", help="runs started before (a date includes that whole day)")]
SopOpt = Annotated[str | None, typer.Option("--sop", metavar="ID", help="only runs of this SOP")]
ClassOpt = Annotated[str | None, typer.Option("--class", metavar="C", help="only this class: complaint, outage, "
                                                                             "policy, routine")]
DrillsOpt = Annotated[str, typer.Option("--drills", metavar="include|exclude|only",
                                        help="drills (runs started as a drill) count like any run (include), are left "
                                             "out (exclude) or alone (only)")]
UtcOpt = Annotated[bool, typer.Option("--utc", help="show times in UTC (default: the site's zone, settings.timezone, "
                                                    "named in the header); --csv and --json always write ISO 8601 "
                                                    "times in UTC with their offset (+00:00)")]
#: ``--csv`` and ``--json`` of the listings: a FILE, or stdout (``-``, or the option alone as these once were flags)
CsvOut = Annotated[str | None, typer.Option("--csv", metavar="[FILE]", help="write CSV to FILE (times ISO 8601 "
                                                                            "UTC); alone or `-`: to stdout")]
JsonOut = Annotated[str | None, typer.Option("--json", metavar="[FILE]", help="write JSON to FILE (times ISO 8601 "
                                                                              "UTC); alone or `-`: to stdout")]


def _audit(utc: bool = False) -> tuple[Audit, Times]:
    """The audit of this site's ledger, and how its tables show times: in the site's zone, or in UTC (``utc``)."""
    from flows.engine.build import ledger_for

    loaded = library(lenient=True)  # history is in the ledger: a broken file only warns
    subject = Audit(ledger_for(loaded), sops=loaded.sops)
    return subject, Times("UTC" if utc else loaded.site.settings.timezone, subject.now())


# --- sop audit runs --------------------------------------------------------------------------


@audit.command("runs", cls=FileOrStdout)
def runs_command(
    sop: SopOpt = None, sop_class: ClassOpt = None, since: Since = None, until: Until = None,
    drills: DrillsOpt = "include", json_file: JsonOut = None, csv_file: CsvOut = None, utc: UtcOpt = False,
    verify: Annotated[bool, typer.Option(help="verify the hash chain first: a ledger that does not verify is said on "
                                              "stderr, and the command exits 1")] = True,
) -> None:
    """One line per run: SOP and version, trigger, start, end, outcome, deadline met or missed, escalations; drills marked."""
    subject, times = _audit(utc)
    try:
        within = subject.window(since, until, times.zone)
        lines = subject.lines(within, sop=sop, sop_class=sop_class, drills=drills)
    except AuditError as exc:
        fail(exc.message, exc.hint)
    checked = _verified(subject) if verify else None  # lines read from a tampered ledger are the forger's
    touched = subject.touched(checked)
    _lines_out(lines, RUN_COLUMNS, json_file, csv_file, lambda shown: print_runs(shown, within, times, touched))
    if checked is not None and not checked.ok:
        _say_broken(checked, "these runs")
        raise typer.Exit(1)


# --- sop audit show --------------------------------------------------------------------------


VerifyOpt = Annotated[bool, typer.Option(help="verify the hash chain first: a ledger that does not verify is said in "
                                              "every output (the JSON's `verification`), and the command exits 1")]


def _verified(subject: Any) -> Any:
    """The chain walked (with a progress bar on a terminal)."""
    with progress_bar("verifying the hash chain") as told:
        return subject.verify(progress=told)


def _say_broken(checked: Any, what: str) -> None:
    first = checked.first_break
    err_console.print(f"[bold red]✗ the ledger does not verify[/]{f' ({first.where}: {first.kind})' if first else ''}: "
                      f"{what} may not be what happened; see `sop audit verify`", soft_wrap=True)


@audit.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    verify: VerifyOpt = True,
    utc: UtcOpt = False,
) -> None:
    """One run's whole timeline: trigger, every step, notification, escalation, report, deadline; its SOP text."""
    subject, times = _audit(utc)
    try:
        doc = subject.show(run_id)
    except AuditError as exc:
        fail(exc.message, exc.hint)
    checked = _verified(subject) if verify else None  # a story read from a tampered ledger is the forger's
    broken = checked is not None and not checked.ok
    if broken:
        _say_broken(checked, "this run's story")
    if as_json:
        sys.stdout.write(to_json({**doc, "verification": checked.summary()} if checked is not None else doc))
    else:
        print_document(doc, times, checked.unsound if checked is not None else None)
    if broken:
        raise typer.Exit(1)


# --- sop audit report ------------------------------------------------------------------------


@audit.command("report", cls=FileOrStdout)
def report_command(
    since: Since = None, until: Until = None, sop: SopOpt = None, sop_class: ClassOpt = None,
    drills: DrillsOpt = "include",
    html: Annotated[str | None, typer.Option("--html", metavar="FILE", help="write the HTML report (self-contained, prints well)")] = None,
    csv_file: Annotated[str | None, typer.Option("--csv", metavar="[FILE]", help="write the figures as CSV to FILE; alone or `-`: to stdout")] = None,
    json_file: Annotated[str | None, typer.Option("--json", metavar="[FILE]", help="write figures and run lines as JSON to FILE (times ISO 8601 UTC); alone or `-`: to stdout")] = None,
    timelines: Annotated[int | None, typer.Option("--timelines", metavar="N", min=0, help="draw at most N run timelines in the HTML (default: all)")] = None,
    verify: VerifyOpt = True,
    utc: UtcOpt = False,
) -> None:
    """SLA compliance per SOP and per class (on time, time to acknowledge and complete, escalations, late steps by role)."""
    subject, times = _audit(utc)
    began = time.perf_counter()
    try:
        within = subject.window(since, until, times.zone)
        # read (and the charts drawn) on two processes; no chart at all without --html
        with progress_bar("reading runs" + (" and drawing their timelines" if html else "")) as told:
            report, charts = subject.report_with_sections(within, sop=sop, sop_class=sop_class, drills=drills,
                                                            max_timelines=timelines if html else 0, progress=told)
    except AuditError as exc:
        fail(exc.message, exc.hint)
    checked = _verified(subject) if verify else None  # figures read from a tampered ledger are the forger's
    broken = checked is not None and not checked.ok

    def document() -> str:
        figures = report.to_dict()
        if checked is not None:
            figures["verification"] = checked.summary()
        return to_json(figures)

    piped = write_exports({"CSV": (csv_file, lambda: to_csv(report.rows, COMPLIANCE_COLUMNS)), "JSON": (json_file, document)})
    if html:
        from flows.audit.html import render_html

        write_export(html, render_html(report, charts, verification=checked))
    if broken:
        _say_broken(checked, "these figures")
    if piped:
        if broken:
            raise typer.Exit(1)
        return
    print_compliance(report, within, times)
    print_silences(report.silences, times)
    print_follow_ups(report.follow_ups)
    say_written({"HTML": html, "CSV": csv_file, "JSON": json_file})
    console.print(f"[dim]{len(report.runs)} run(s) in {time.perf_counter() - began:.2f}s[/]")
    if broken:
        raise typer.Exit(1)


# --- sop audit silenced ----------------------------------------------------------------------


@audit.command("silenced", cls=FileOrStdout)
def silenced_command(
    since: Annotated[str | None, typer.Option("--since", help="silenced from: 2026-03-01, an ISO time or 7d")] = None,
    until: Annotated[str | None, typer.Option("--until", help="silenced before (a date includes that whole day)")] = None,
    json_file: JsonOut = None, csv_file: CsvOut = None, utc: UtcOpt = False,
) -> None:
    """Every trigger a silence kept from starting a run: when, the signal, the SOP it would have started, who silenced it and why."""
    _window_listed(utc, since, until, lambda subject, within: subject.silenced(within), SILENCED_COLUMNS, json_file,
                   csv_file, print_silenced)


# --- sop audit refused ----------------------------------------------------------------------


@audit.command("refused", cls=FileOrStdout)
def refused_command(
    since: Annotated[str | None, typer.Option("--since", help="refused from: 2026-03-01, an ISO time or 7d")] = None,
    until: Annotated[str | None, typer.Option("--until", help="refused before (a date includes that whole day)")] = None,
    json_file: JsonOut = None, csv_file: CsvOut = None, utc: UtcOpt = False,
) -> None:
    """Every signal an SOP's trigger matched but could not start (a label its inputs read missing…): when, the SOP, why, its labels, whether its owner was paged."""
    _window_listed(utc, since, until, lambda subject, within: subject.refused(within), REFUSED_COLUMNS, json_file,
                   csv_file, print_refused)


def _window_listed(utc: bool, since: str | None, until: str | None, lines_of: Callable[[Any, Any], list[Any]],
                   columns: list[str], json_file: str | None, csv_file: str | None,
                   table: Callable[[Any, Any], None]) -> None:
    """The lines ``lines_of`` gives for the window ``--since``/``--until`` (read in the table's zone), to the files
    asked for or as the table ``table`` prints them."""
    subject, times = _audit(utc)
    try:
        lines = lines_of(subject, subject.window(since, until, times.zone))
    except AuditError as exc:
        fail(exc.message, exc.hint)
    _lines_out(lines, columns, json_file, csv_file, lambda shown: table(shown, times))


def _lines_out(lines: list[Any], columns: list[str], json_file: str | None, csv_file: str | None,
               table: Callable[[Any], None]) -> None:
    """A listing's lines as JSON and CSV, each to its FILE or to stdout; the ``table`` drawn unless one went to
    stdout."""
    if write_exports({"JSON": (json_file, lambda: to_json([line.to_dict() for line in lines])),
                 "CSV": (csv_file, lambda: to_csv(lines, columns))}):
        return
    table(lines)
    say_written({"JSON": json_file, "CSV": csv_file})


# --- sop audit actions -----------------------------------------------------------------------


@audit.command("actions", cls=FileOrStdout)
def actions_command(
    since: Annotated[str | None, typer.Option("--since", help="from: 2026-03-01, an ISO time or 7d")] = None,
    until: Annotated[str | None, typer.Option("--until", help="before (a date includes that whole day)")] = None,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="sign-in, oncall or silence (repeatable; "
                                                                   "default: all)")] = None,
    json_file: JsonOut = None, csv_file: CsvOut = None, utc: UtcOpt = False,
) -> None:
    """What people did outside any run: sign-ins, on-call overrides made and ended, silences made and ended; who, how it
    came (web, link, cli, api) and what, in the order it came."""
    from flows.audit.actions import ACTION_COLUMNS

    subject, times = _audit(utc)
    try:
        within = subject.window(since, until, times.zone)
        lines = subject.actions(within, kind)
    except AuditError as exc:
        fail(exc.message, exc.hint)
    # the exports' words give times in UTC, as their own; the table's in its zone, as its own
    _lines_out(lines, ACTION_COLUMNS, json_file, csv_file,
               lambda shown: print_actions(subject.actions(within, kind, times.zone), times))


# --- sop audit verify ------------------------------------------------------------------------


@audit.command("verify")
def verify_command(
    anchor: Annotated[list[str] | None, typer.Option("--anchor", metavar="SEQ:HASH",
                                                        help="a head noted earlier: that record must still have that hash (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
) -> None:
    """Recompute the hash chain; name the first broken record (edited, deleted, reordered, inserted). Exit 1 on any break."""
    subject, _ = _audit()
    try:
        anchors = [Anchor.parse(a) for a in anchor or []]
    except AuditError as exc:
        fail(exc.message, exc.hint)
    with progress_bar("verifying the hash chain") as told:
        result = subject.verify(anchors, progress=told)
    if as_json:
        sys.stdout.write(to_json(result.to_dict()))
    else:
        print_verification(result)
    if not result.ok:
        raise typer.Exit(1)


# --- sop audit history -----------------------------------------------------------------------


@audit.command("history")
def history_command(
    sop_id: Annotated[str, typer.Argument(metavar="ID", help="SOP id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout")] = False,
    diff: Annotated[bool, typer.Option(help="show what changed between versions")] = True,
    utc: UtcOpt = False,
) -> None:
    """Which versions (exact texts) of an SOP ran when, with a diff between consecutive versions."""
    lib = library()
    subject, times = _audit(utc)
    current = lib.sops[sop_id].text_hash if sop_id in lib.sops else None
    try:
        history = subject.history(sop_id, current)
    except AuditError as exc:
        fail(exc.message, exc.hint)
    if as_json:
        sys.stdout.write(to_json(history.to_dict()))
        return
    print_history(sop_id, history, current, diff=diff, times=times)
