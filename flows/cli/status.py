"""``sop status``: the open runs (or one) as an ops manager reads them, every step of each, or one line per run
(``--short``, most urgent first: what three open incidents look like on one screen)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from flows.cli import app
from flows.cli.common import COLUMN_GAP, console, cut, fail, one_line_width, print_json, short_clock
from flows.cli.notes import page_notes
from flows.cli.runs import _engine
from flows.engine.board import short_rows, status_rows
from flows.engine.view import RunNotFound


@app.command()
def status(
    run_id: Annotated[str | None, typer.Argument(metavar="RUN", help="one run (id or unique prefix; default: every open run)")] = None,
    short: Annotated[bool, typer.Option("--short", "-s", help="one line per run: priority, SOP and subject, state, the next due and the time left, who holds the most urgent step; most urgent first")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output (with --short: the lines' facts)")] = False,
    for_: Annotated[str | None, typer.Option("--for", metavar="PERSON", help="every open step across open runs that waits on PERSON (a person id, or `me`): assigned to them, held or handed to them, escalated to them; most urgent first (with --short: one line)")] = None,
    people: Annotated[bool, typer.Option("--people", help="one line per person with open steps: how many, how many overdue, the most urgent and its time left; the most overdue first")] = False,
) -> None:
    """Open runs by priority (complaint, outage, policy, routine); each step with its state, assignee, due and time
    left. With --short, one line per run; --for PERSON, what waits on one person; --people, everyone's load."""
    if for_ is not None or people:
        from flows.cli.load import show_load

        show_load(run_id, for_, people, short=short, as_json=as_json)
        return
    engine = _engine(prefect=False)
    try:
        rows = status_rows(engine, run_id)
    except RunNotFound as exc:
        fail(str(exc))
    if short:
        lines = short_rows(rows, datetime.now(UTC))
        if as_json:
            print_json(lines)
            return
        page_notes(engine)
        _print_short(lines, engine.site.settings.timezone)
        return
    if as_json:
        print_json(rows)
        return
    page_notes(engine)
    if not rows:
        console.print("no open runs")
        return
    _print_long(rows, engine.site.settings.timezone)


#: the columns of ``sop status --short``; the SOP's title (with the run's subject) gives way when the line is long,
#: and on a terminal too narrow for the others (a laptop's half screen) a run takes two lines: its SOP over its state,
#: its next due over the time left
SHORT_COLUMNS = ("", "run", "SOP", "state", "next due", "left", "holds it")
NARROW_COLUMNS = ("", "run", "SOP / state", "next due / left", "holds it")
_ABOUT = SHORT_COLUMNS.index("SOP")
#: the least of the SOP's title a one-line row may keep (``Crisis PR · lu…``); with less room, two lines a run
_ABOUT_LEAST = 16
_STATE_COLOURS = {"overdue": "red", "step failed": "red", "automation stopped": "red", "on hold": "cyan"}


def _print_short(lines: list[dict[str, Any]], zone: str) -> None:
    """One line per run (``sop status --short``): every column whole (the run id is what the other commands take),
    the SOP's title cut to what the terminal leaves it; on a narrow terminal two lines a run."""
    from flows.clock import in_zone, zone_label
    from flows.language.presentation import short_title

    if not lines:
        console.print("no open runs")
        return
    rows = []
    for line in lines:
        due = f"{line['due']} {short_clock(line['due_at'], zone)}" if line["due_at"] is not None else line["step"] or "—"
        rows.append([line["priority"], line["run"],  # a drill says so first: the title is cut from its end
                     ("drill: " if line["drill"] else "") + short_title(line["title"])
                     + (f" · {line['subject']}" if line["subject"] else ""),
                     line["state"], due, line["time_left"] or "—",
                     line["holder"] or line["role"] or ("—" if line["step_kind"] in (None, "human", "wait")
                                                        else "automation")])
    room = console.width - COLUMN_GAP - one_line_width([h for i, h in enumerate(SHORT_COLUMNS) if i != _ABOUT],
                                                       [[c for i, c in enumerate(row) if i != _ABOUT] for row in rows])
    narrow = room < min(_ABOUT_LEAST, max(cell_len(row[_ABOUT]) for row in rows))  # (cells: a CJK title is wide)
    if narrow:  # the room of SOP / state: what the other columns leave, each of their two lines whole
        room = console.width - COLUMN_GAP - one_line_width(
            ("", "run", "next due / left", "holds it"), [[r[0], r[1], due_or_left, r[6]] for r in rows for due_or_left in r[4:6]])
    table = Table(box=None, pad_edge=False, show_edge=False, caption_justify="left",
                  caption=f"times {zone_label(in_zone(datetime.now(UTC), zone))}; time left in SOP time")
    for head in NARROW_COLUMNS if narrow else SHORT_COLUMNS:
        table.add_column(head, no_wrap=True)
    for priority, run, about, state, due, left, holder in rows:
        colour = _STATE_COLOURS.get(state)
        shown = cut(state, room) if narrow else state  # under the SOP, in its room ("automation stopped" is 18)
        state = f"[{colour}]{escape(shown)}[/]" if colour else escape(shown)
        if narrow:
            table.add_row(f"[bold]{priority}[/]", run, f"{escape(cut(about, room))}\n{state}",
                          f"{escape(due)}\n{escape(left)}", escape(holder))
        else:
            table.add_row(f"[bold]{priority}[/]", run, escape(cut(about, room)), state, escape(due), escape(left),
                          escape(holder))
    console.print(table)


def _print_long(rows: list[dict[str, Any]], zone: str) -> None:
    """Each run's heading, then its steps as a table (``sop status``)."""
    for row in rows:
        status, outcome = row["status"], row["outcome"]  # ended: how (finished (failed), cancelled: why)
        if outcome and outcome != status:
            status = outcome if outcome.startswith(f"{status}:") else f"{status} ({outcome})"
        about = f" · [bold]{escape(row['subject'])}[/]" if row["subject"] else ""  # two runs of one SOP differ in it
        head = f"[bold]{row['priority']} {row['run']}[/] {row['sop']}{about} — {escape(status)}"
        if row["hold"]:
            head += f", [cyan]on hold[/] waiting for {escape(row['hold']['reason'])} (deadline waits)"
        elif row["deadline_left"]:
            head += f", deadline {row['deadline_left']}"
        if row["drill"]:  # as the board and the audit say it: a compressed real run is no drill
            head += f" [yellow]drill ×{row['speed']:g}[/]"
        elif row["speed"] != 1:
            head += f" [dim](speed ×{row['speed']:g})[/]"
        if row["failed_notifications"]:
            head += f" [red]{row['failed_notifications']} failed notification(s)[/]"
        console.print(head, soft_wrap=True)  # the whole line: a table's title wraps at the table's width
        _monitoring_lines(row, zone)
        table = Table(show_edge=False)
        for col in ("step", "state", "assignee", "time left", "by"):
            table.add_column(col)
        for step in row["steps"]:
            colour = {"active": "yellow", "done": "green", "failed": "red", "rejected": "red"}.get(step["state"], "dim")
            assignee = step["assignee"] or "—"
            if step.get("person") and step["person"] != step["assignee"]:
                assignee += f" ({step['person']})"  # who has it now: its holder or the role's primary
            state, left = f"[{colour}]{step['state']}[/]", step["time_left"] or ""
            if step["hold"]:  # its clock stopped: nothing runs out while it waits
                state = f"[cyan]on hold[/] ({escape(step['hold']['reason'])})"
                left = "clock stopped"
            by = step["actor"] or ""
            if step.get("actor_by") and step["actor_by"] != by:  # an operator reported it for them: both, as the audit says
                by = f"{step['actor_by']} for {by}"
            table.add_row(step["step"], state, escape(assignee), left, escape(by))
        console.print(table)
        if row["automation"]:
            console.print(f"  [red]{escape(row['automation'])}[/] [dim](cancel the run, or carry it on by hand)[/]")


def _monitoring_lines(row: dict[str, Any], zone: str) -> None:
    """What monitoring said since the run started: its alert resolved (when, which), the latest repeat (when, what
    it said)."""
    from flows.clock import local_time

    said = row["monitoring"]
    if not said:
        return
    if said["resolved_at"]:
        alert = f" (alert {escape(said['resolved_alert'])})" if said["resolved_alert"] else ""
        console.print(f"  [green]monitoring: resolved at {local_time(said['resolved_at'], zone)}{alert}[/]",
                      soft_wrap=True)
    if said["repeated_at"]:
        words = f": {escape(said['repeat_said'])}" if said["repeat_said"] else ""
        console.print(f"  latest repeat {local_time(said['repeated_at'], zone)} ({row['repeats']} in all){words}",
                      soft_wrap=True)
