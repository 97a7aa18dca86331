"""How ``sop audit …`` looks on a terminal: its tables, the verdicts, the progress bar.

The commands (:mod:`flows.cli.audit`) read the audit and choose the output; ``--json`` and
``--csv`` never come here. Everything here prints to the console (or draws on stderr). One
run's story (``sop audit show``) is told by :mod:`flows.cli.audit_story`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.markup import escape
from rich.table import Table

from flows.audit import ComplianceReport, RunLine, SilencedLine, SilenceLine, SopHistory, Verification, Window
from flows.audit.followups import FollowUpFigures
from flows.audit.report import SOP_TIME_NOTE, Compliance
from flows.cli.common import console, err_console
from flows.clock import in_zone, local_time, zone_label
from flows.language.durations import format_duration

VERDICT_STYLE = {"met": "green", "missed": "bold red", "pending": "yellow",
                 "on time": "green", "late": "bold red", "overdue": "bold red", "not done": "red"}


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[float], None] | None]:
    """A bar on the terminal (stderr) while ``what`` goes on, told the share done; None when
    stderr is not a terminal (scripts, CI, pipes get no bar). It draws only when told (no
    thread: the report and verify fork a child only in a process that runs one thread)."""
    if not (err_console.is_terminal and sys.stderr.isatty()):  # FORCE_COLOR in a CI log is no terminal
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as bar:
        task = bar.add_task(what, total=1.0)
        bar.refresh()

        def told(share: float) -> None:
            bar.update(task, completed=share)
            bar.refresh()

        yield told
        told(1.0)


@dataclass(frozen=True)
class Times:
    """How the audit's tables show instants: in ``zone``, the site's (``settings.timezone``, as the rest of the
    terminal shows times) or UTC (``--utc``), each table saying which. ``--json`` and ``--csv`` never come here:
    they write ISO 8601 in UTC, with the offset. ``now``: the audit's (its clock's), for a table with no time."""

    zone: str = "UTC"
    now: datetime | None = None

    def at(self, instant: datetime | None) -> str:
        """A table's cell: ``2026-03-02 17:00:00``; in a zone that changes its offset (summer time), with its
        label (``2026-10-25 02:30:00 CEST (UTC+2)``): the hour the clocks go back happens twice."""
        if instant is None:
            return "—"
        local = in_zone(instant, self.zone)
        text = local.strftime("%Y-%m-%d %H:%M:%S")
        return f"{text} {zone_label(local)}" if self._shifts(local) else text

    def full(self, instant: datetime | None) -> str:
        """An instant on a line of its own, its zone said: ``2026-03-02 17:00:00 CST (UTC+8)``."""
        return "—" if instant is None else local_time(instant, self.zone, seconds=True)

    def said(self, sample: datetime | None = None) -> str:
        """Which zone a table's cells are in (``sample``: one of its times): ``times Asia/Shanghai, CST (UTC+8)``,
        ``times UTC``."""
        if self.zone == "UTC":
            return "times UTC"
        local = in_zone(sample or self.now or datetime.now(UTC), self.zone)
        if self._shifts(local):
            return f"times {self.zone}, each with its offset"
        return f"times {self.zone}, {zone_label(local)}"

    def _shifts(self, local: datetime) -> bool:
        """Whether ``local``'s zone has two offsets in its year (summer time)."""
        if not 1 < local.year < 9999:
            return False
        return len({datetime(local.year, month, 1, tzinfo=local.tzinfo).utcoffset() for month in (1, 7)}) > 1


UTC_TIMES = Times()


def _header(text: str) -> None:
    """A listing's header on a line of its own: whole, where a table's title would wrap at the table's width."""
    console.print(f"[italic]{escape(text)}[/]", soft_wrap=True)


def dur(seconds: float | None) -> str:
    """A duration in SOP seconds as a table shows it (``1h20m``), ``—`` when there is none."""
    return "—" if seconds is None else format_duration(timedelta(seconds=seconds))


def styled_verdict(verdict: str) -> str:
    """A verdict (met, missed, late…) in its colour."""
    style = VERDICT_STYLE.get(verdict)
    return f"[{style}]{verdict}[/]" if style else verdict


# --- silences (sop audit report, sop audit silenced) ----------------------------------------


def _until(iso: str, times: Times) -> str:
    """A recorded instant (ISO text) with its zone: ``2026-12-06 20:29:37 CST (UTC+8)``."""
    try:
        return times.full(datetime.fromisoformat(iso))
    except ValueError:
        return iso


def print_silences(lines: list[SilenceLine], times: Times = UTC_TIMES) -> None:
    """The report's silenced triggers: per silence, who made it, why, and how many triggers it held."""
    if not lines:
        console.print("[dim]Silenced triggers: none[/]")
        return
    table = Table(title=f"Silenced triggers: {sum(s.silenced for s in lines)} by {len(lines)} silence(s)",
                  title_justify="left", show_edge=False, caption="Each one recorded as trigger_silenced: "
                  "`sop audit silenced` lists them.", caption_justify="left")
    table.add_column("silence", no_wrap=True)
    for column in ("by", "why", "matchers", "silenced", "per SOP", "ended"):
        table.add_column(column, justify="right" if column == "silenced" else "left")
    for s in lines:
        ended = f"{s.ended_by}: {s.end_reason}" if s.ended_by else (f"until {_until(s.ends_at, times)}" if s.ends_at else "")
        table.add_row(s.silence, escape(s.created_by), escape(s.reason), escape(s.matchers), str(s.silenced),
                      ", ".join(f"{sop} {n}" for sop, n in sorted(s.by_sop.items())), escape(ended))
    console.print(table)


def print_silenced(lines: list[SilencedLine], times: Times = UTC_TIMES) -> None:
    """``sop audit silenced``: one row per trigger a silence held."""
    _header(f"{len(lines)} silenced trigger(s); {times.said(lines[0].at if lines else None)}")
    table = Table(show_edge=False)
    for column in ("at", "SOP", "signal", "silence", "by", "why", "sent by"):
        table.add_column(column, no_wrap=column in ("at", "silence"))
    for line in lines:
        signal = escape(line.subject) + (f" ×{line.copies}" if line.copies > 1 else "")
        table.add_row(times.at(line.at), line.sop, f"{line.kind}: {signal}", line.silence, line.silenced_by,
                      escape(line.reason), escape(line.sender or "-"))
    console.print(table)


def print_refused(lines: list[Any], times: Times = UTC_TIMES) -> None:
    """``sop audit refused``: one row per signal an SOP's trigger matched but could not start."""
    _header(f"{len(lines)} refused trigger(s); {times.said(lines[0].at if lines else None)}")
    table = Table(show_edge=False, caption="paged: its SOP's owner was paged for it (a repeat within the hour is "
                  "counted, not paged).", caption_justify="left")
    for column in ("at", "SOP", "signal", "why", "paged", "sent by"):
        table.add_column(column, no_wrap=column == "at")
    for line in lines:
        signal = f"{line.source}: {escape(line.subject)}" + (f" ×{line.copies}" if line.copies > 1 else "")
        paged = "yes" if line.paged else f"no (#{line.count} this hour)"
        table.add_row(times.at(line.at), f"{line.sop} (triggers[{line.trigger}])", signal, escape(line.problems),
                      paged, escape(line.sender or "-"))
    console.print(table)


def print_actions(lines: list[Any], times: Times = UTC_TIMES) -> None:
    """``sop audit actions``: one row per thing a person did outside any run."""
    _header(f"{len(lines)} action(s) outside runs; {times.said(lines[0].at if lines else None)}")
    table = Table(show_edge=False, caption="record: the chain's record number (sop audit verify names records by it).",
                  caption_justify="left")
    for column in ("at", "record", "kind", "who", "what"):
        table.add_column(column, no_wrap=column in ("at", "record"), justify="right" if column == "record" else "left")
    for line in lines:
        table.add_row(times.at(line.at), str(line.seq), line.kind, escape(line.who), escape(line.what))
    console.print(table)


# --- sop audit runs --------------------------------------------------------------------------


def print_runs(lines: list[RunLine], within: Window, times: Times = UTC_TIMES,
               touched: dict[str, list[str]] | None = None) -> None:
    """The terminal rendering of ``sop audit runs``: one row per run; under its verdict, each of its records that
    does not check out (``touched``: :meth:`flows.audit.Audit.touched`)."""
    said = times.said(lines[0].started_at if lines else None)
    _header(f"{len(lines)} run(s): {within.describe(times.zone)}; {said}")
    table = Table(show_edge=False, caption=SOP_TIME_NOTE, caption_justify="left")
    # the run id is what `sop audit show` takes: never cut, the other columns wrap to make room
    table.add_column("run", no_wrap=True, min_width=max((len(line.run) for line in lines), default=3))
    for column in ("SOP", "version", "class", "trigger", "started", "ended", "outcome", "deadline", "esc."):
        table.add_column(column, justify="right" if column == "esc." else "left")
    for line in lines:
        # a drill's trigger reads "drill …" (its kind): marked, with its speed
        trigger = (f"[yellow]{escape(line.trigger)} ×{line.speed:g}[/]" if line.drill else
                   f"{escape(line.trigger)} [yellow]×{line.speed:g}[/]" if line.speed != 1 else escape(line.trigger))
        marks = "".join(f"\n[bold red]✗ {escape(mark)}[/]" for mark in (touched or {}).get(line.run, []))
        table.add_row(line.run, line.sop, f"v{line.version} {line.sop_hash[:12]}", line.sop_class, trigger,
                      times.at(line.started_at), times.at(line.ended_at), escape(line.outcome),
                      styled_verdict(line.deadline) + marks, str(line.escalations))
    console.print(table)


# --- sop audit report ------------------------------------------------------------------------


def _compliance_table(title: str, label: str, rows: list[Compliance]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    # the SOP or class is never cut; on a narrow terminal a figure wraps rather than lose digits ("1h20m1…")
    table.add_column(label, no_wrap=True, min_width=max((len(r.key) for r in rows), default=len(label)))
    for column in ("runs", "met", "TTA med", "TTA p90", "TTC med", "TTC p90", "esc./run", "late steps"):
        table.add_column(column, justify="right", overflow="fold")
    for r in rows:
        on_time = "—" if r.on_time_pct is None else f"{r.on_time_pct:g}%"
        table.add_row(r.key, str(r.runs), f"{on_time} ({r.met}/{r.met + r.missed})", dur(r.tta_median_s),
                      dur(r.tta_p90_s), dur(r.ttc_median_s), dur(r.ttc_p90_s),
                      "—" if r.escalations_per_run is None else f"{r.escalations_per_run:g}", f"{r.late_steps}/{r.timed_steps}")
    return table


def print_compliance(report: ComplianceReport, within: Window, times: Times = UTC_TIMES) -> None:
    """The terminal rendering of ``sop audit report``: by SOP, by class, all runs, late steps by role."""
    note = report.drills_note()
    drills = f", {note}" + (" (--drills exclude leaves them out)" if report.drills == "include" else "") if note else ""
    console.print(_compliance_table(f"By SOP — {within.describe(times.zone)}{drills}", "SOP", report.by_sop))
    console.print(_compliance_table("By class", "class", report.by_class))
    console.print(_compliance_table("All runs", "", [report.overall]))
    roles = Table(title="Late steps by role", title_justify="left", show_edge=False)
    for column in ("role", "steps with a due", "late", "late %"):
        roles.add_column(column, justify="left" if column == "role" else "right")
    for r in report.by_role:
        roles.add_row(r.key, str(r.timed_steps), str(r.late_steps), "—" if r.late_pct is None else f"{r.late_pct:g}%")
    console.print(roles)
    o = report.overall
    if o.rework_rounds or o.handovers or o.status_asked:
        console.print(f"rework rounds {o.rework_rounds} · hand-overs {o.handovers} · status updates "
                      f"{o.status_updates} posted, {o.status_missed} missed of {o.status_asked} asked")
    print_clock_figures(o)
    console.print(f"[dim]{SOP_TIME_NOTE} TTA: first assignment → first answer by a person; TTC: start → finish "
                  f"(docs/audit.md).[/]")


def print_clock_figures(o: Any) -> None:
    """Business time and holds (#21): on time on wall time beside the calendars', time on hold, late steps the
    other ways (hold time counted; on wall time)."""
    if not (o.holds or o.met_wall + o.missed_wall != o.met + o.missed or o.late_steps_wall != o.late_steps
            or o.on_time_wall_pct != o.on_time_pct):
        return
    pct = "—" if o.on_time_wall_pct is None else f"{o.on_time_wall_pct:g}%"
    console.print(f"on time on wall time {pct} ({o.met_wall} met, {o.missed_wall} missed) · on hold "
                  f"{format_duration(timedelta(seconds=o.held_s))} in {o.holds} hold(s) · late steps "
                  f"{o.late_steps} as the clock ran, {o.late_steps_counting_holds} counting hold time, "
                  f"{o.late_steps_wall} on wall time")


def print_follow_ups(rows: list[FollowUpFigures]) -> None:
    """The report's follow-ups done within their window: per (SOP ended → follow-up SOP), then all."""
    if not rows:
        console.print("[dim]Follow-ups: none started[/]")
        return
    table = Table(title="Follow-ups done within their window", title_justify="left", show_edge=False,
                  caption="On time: finished done by the window's end (within, from the run's end); overdue: still "
                          "open past it (docs/audit.md).", caption_justify="left")
    for column in ("started by", "follow-up", "count", "on time", "late", "open", "overdue", "not done", "on time %"):
        table.add_column(column, justify="left" if column in ("started by", "follow-up") else "right")
    for r in rows:
        pct = "—" if r.on_time_pct is None else f"{r.on_time_pct:g}%"
        table.add_row(r.parent_sop, r.sop, str(r.count), str(r.on_time), str(r.late), str(r.open), str(r.overdue),
                      str(r.not_done), pct)
    console.print(table)


# --- sop audit verify ------------------------------------------------------------------------


def print_verification(result: Verification) -> None:
    """The terminal rendering of ``sop audit verify``: each break and suspect, or the intact chain; the head."""
    if result.breaks:
        first = result.breaks[0]
        console.print(f"[bold red]✗ {first.where}: {first.kind}[/] — {escape(first.message)}")
        for more in result.breaks[1:]:
            console.print(f"[red]✗ {more.where}: {more.kind}[/] — {escape(more.message)}")
    if result.suspects:
        shown = ", ".join(str(s) for s in result.suspects[:20]) + ("…" if len(result.suspects) > 20 else "")
        console.print(f"[red]✗ {len(result.suspects)} later record(s) do not match their own hash either:[/] {shown}")
    for text in result.bad_texts:
        console.print(f"[red]✗ pinned SOP text {text} was edited: it no longer hashes to its id[/]")
    for text in result.missing_texts:
        console.print(f"[red]✗ pinned SOP text {text} is missing (runs name it)[/]")
    if result.ok:
        console.print(f"[green]✓ chain intact:[/] {result.records:,} records, {result.texts_checked} pinned SOP text(s) match")
    console.print(f"head: record {result.head_seq} hash {result.head_hash}")
    if result.tail.records:
        console.print(f"[yellow]{escape(result.tail.words)}[/]", soft_wrap=True)
    if result.ok:  # a head to note down only from a chain that verifies: this one's may be the forger's
        anchors = " ".join(f"--anchor {anchor}" for anchor in result.anchors)
        console.print(f"[dim]note {'these' if result.tail.records else 'the head'} elsewhere; next time `sop audit "
                      f"verify {anchors}` also proves nothing was cut off the end or rewritten since[/]", soft_wrap=True)


# --- sop audit history -----------------------------------------------------------------------


def print_history(sop_id: str, history: SopHistory, current: str | None, *, diff: bool,
                  times: Times = UTC_TIMES) -> None:
    """The terminal rendering of ``sop audit history``: the versions that ran, then (``diff``) what changed."""
    said = times.said(history.periods[0].first_started if history.periods else None)
    table = Table(title=f"{sop_id}: {len(history.versions)} version(s) in {len(history.periods)} period(s), {said}",
                  title_justify="left", show_edge=False)
    for column in ("version", "text sha256", "runs", "first run", "last run", ""):
        table.add_column(column, justify="right" if column == "runs" else "left")
    for p in history.periods:
        marks = []
        if p.sop_hash == current:
            marks.append("[green]current file[/]")
        if not history.texts_ok.get(p.sop_hash):
            marks.append("[red]pinned text missing or edited[/]")
        table.add_row(f"v{p.version}", p.sop_hash[:16], str(p.runs), f"{times.at(p.first_started)} {p.first_run}",
                      f"{times.at(p.last_started)} {p.last_run}", " ".join(marks))
    console.print(table)
    if current is None:
        console.print(f"[dim]{sop_id} is not in the library any more[/]")
    elif current not in history.versions:
        console.print("[yellow]the library's current text has not run yet[/]")
    if diff:
        for change in history.changes:
            console.rule(f"v{change.from_version} ({change.from_hash[:12]}) → v{change.to_version} ({change.to_hash[:12]})")
            if not change.diff:
                console.print("[red]a pinned text is missing: no diff[/]")
            for line in change.diff.splitlines():
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else None
                console.print(f"[{style}]{escape(line)}[/]" if style else escape(line), soft_wrap=True)
