"""``sop status --for PERSON`` and ``sop status --people``: one person's load across the open runs (what waits on
them, why, most urgent first), and everyone's (one line per person, the most overdue first). What counts is
:func:`flows.engine.load.why_theirs`, the rule the home page and the board's person filter use too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from flows.cli.common import COLUMN_GAP, console, cut, fail, one_line_width, print_json, short_clock
from flows.cli.notes import page_notes
from flows.cli.runs import _engine, terminal_person
from flows.engine.load import Load, Waiting, loads, waiting_on
from flows.language.actors import UnknownPerson, check_person


def show_load(run_id: str | None, person: str | None, people: bool, *, short: bool, as_json: bool) -> None:
    """What ``sop status --for`` / ``--people`` print (a refusal for a RUN given too, or both asked at once)."""
    if person is not None and people:
        fail("--for and --people are two views: ask for one", "--people lists everyone; --for PERSON one of them")
    if run_id is not None:
        fail(f"--{'people' if people else 'for'} looks across every open run: leave out RUN ({run_id})",
             f"`sop status {run_id}` shows that run's steps and who has them")
    engine = _engine(prefect=False)
    if people:
        found = loads(engine)
        if as_json:
            print_json([load.facts() for load in found])
            return
        page_notes(engine)
        _people(found)
        return
    who = _person(engine.site, person or "")
    waiting, open_runs = waiting_on(engine, who)
    if as_json:
        print_json(Load(who, waiting).facts() if short else [w.facts() for w in waiting])
        return
    page_notes(engine, person=who)
    if not waiting:
        console.print(f"nothing waits on {who}: none of the {open_runs} open run(s) has a step that is theirs")
    elif short:
        _summaries([Load(who, waiting)])
    else:
        _steps(who, waiting, engine.site.settings.timezone)


def _person(site: Any, given: str) -> str:
    """A person id of config/ (with the names nearest a misspelt one), or ``me``: who this terminal is (as ``--as``
    resolves it: its OS account's person, else $SOP_ACTOR)."""
    if given.strip().casefold() == "me":
        return terminal_person(site, None, "--for").person
    try:
        return check_person(site, given, "--for")
    except UnknownPerson as exc:
        fail(str(exc), "`sop status --people` lists who has open steps")


def _about(w: Waiting) -> str:
    """The run a step is of, as people tell runs apart: its SOP's title and subject."""
    from flows.language.presentation import short_title

    drill = "drill: " if w.run.is_drill else ""  # first: the title is what gives way on a narrow line
    return drill + short_title(w.run.title) + (f" · {w.run.subject}" if w.run.subject else "")


def _left(w: Waiting) -> str:
    return "clock stopped" if w.step.held_at or w.run.held_at else (w.time_left or "no due")


def _summaries(found: list[Load]) -> None:
    """Each person's load in a line (``--for --short``, ``--people``): how many, how many overdue, the most urgent
    step and its time left. On a narrow terminal the words wrap beside the name, under themselves."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column()
    for load in found:
        top = load.steps[0]
        overdue = f", [red]{load.overdue} overdue[/]" if load.overdue else ""
        table.add_row(f"[bold]{escape(load.person)}[/]:",
                      f"{len(load.steps)} open step(s){overdue}; most urgent [bold]P{top.run.priority}[/] {top.run.id} "
                      f"{escape(_about(top))} / {escape(top.step.id)}, {escape(_left(top))} ({escape(str(top.theirs))})")
    console.print(table)


#: the columns of ``sop status --for``; on a terminal too narrow for them (a laptop's half screen), the due goes (the
#: time left says it) and the SOP and why share a column, a line each, cut to the room the others leave
STEP_COLUMNS = ("", "run", "SOP", "step", "why", "due", "left")
NARROW_COLUMNS = ("", "run", "SOP / why", "step", "left")


def _steps(who: str, waiting: list[Waiting], zone: str) -> None:
    """Each step waiting on ``who``, most urgent first: the run, the step, why it is theirs, its due, time left.
    Every cell on one line: the run and the step are what the other commands take."""
    from flows.clock import in_zone, zone_label

    overdue = Load(who, waiting).overdue
    console.print(f"[bold]{escape(who)}[/]: {len(waiting)} open step(s)"
                  + (f", [red]{overdue} overdue[/]" if overdue else "") + ", most urgent first", soft_wrap=True)
    rows = [[f"P{w.run.priority}", w.run.id, _about(w), w.step.id, str(w.theirs),
             short_clock(w.step.due_at, zone) if w.step.due_at else "—", _left(w)] for w in waiting]
    narrow = one_line_width(STEP_COLUMNS, rows) > console.width
    room = console.width - COLUMN_GAP - one_line_width([h for h in NARROW_COLUMNS if h != "SOP / why"],
                                                      [[row[0], row[1], row[3], row[6]] for row in rows])
    table = Table(box=None, pad_edge=False, show_edge=False, caption_justify="left",
                  caption=f"times {zone_label(in_zone(datetime.now(UTC), zone))}; time left in SOP time")
    for head in NARROW_COLUMNS if narrow else STEP_COLUMNS:
        table.add_column(head, no_wrap=True)
    for w, (priority, run, about, step, why, due, left) in zip(waiting, rows, strict=True):
        left = f"[red]{escape(left)}[/]" if w.overdue else escape(left)
        if narrow:
            about = f"{escape(cut(about, room))}\n[dim]{escape(cut(why, room))}[/]"
            table.add_row(f"[bold]{priority}[/]", run, about, escape(step), left)
        else:
            table.add_row(f"[bold]{priority}[/]", run, escape(about), escape(step), escape(why), due, left)
    console.print(table)


def _people(found: list[Load]) -> None:
    """One line per person with open steps (``sop status --people``), the most overdue first."""
    if not found:
        console.print("no open step waits on anyone")
        return
    _summaries(found)
    console.print("[dim]time left in SOP time; `sop status --for PERSON` lists a person's steps[/]")
