"""``sop status --for PERSON`` and ``sop status --people``: one person's load across the open runs (what waits on
them, why, most urgent first), and everyone's (one line per person, the most overdue first). What counts is
:func:`flows.engine.load.why_theirs`, the rule the home page and the board's person filter use too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from flows.cli.common import console, fail, print_json, short_clock
from flows.cli.runs import _engine, terminal_person
from flows.cli.status import outbox_warning
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
        outbox_warning(engine)
        _people(found)
        return
    who = _person(engine.site, person or "")
    waiting, open_runs = waiting_on(engine, who)
    if as_json:
        print_json(Load(who, waiting).facts() if short else [w.facts() for w in waiting])
        return
    outbox_warning(engine)
    if not waiting:
        console.print(f"nothing waits on {who}: none of the {open_runs} open run(s) has a step that is theirs")
    elif short:
        console.print(_summary(Load(who, waiting)), soft_wrap=True)
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

    return short_title(w.run.title) + (f" · {w.run.subject}" if w.run.subject else "")


def _left(w: Waiting) -> str:
    return "clock stopped" if w.step.held_at or w.run.held_at else (w.time_left or "no due")


def _summary(load: Load) -> str:
    """One person's load in a line: how many, how many overdue, the most urgent step and its time left."""
    top = load.steps[0]
    overdue = f", [red]{load.overdue} overdue[/]" if load.overdue else ""
    return (f"[bold]{escape(load.person)}[/]: {len(load.steps)} open step(s){overdue}; most urgent "
            f"[bold]P{top.run.priority}[/] {top.run.id} {escape(_about(top))} / {escape(top.step.id)}, "
            f"{escape(_left(top))} ({escape(str(top.theirs))})")


def _steps(who: str, waiting: list[Waiting], zone: str) -> None:
    """Each step waiting on ``who``, most urgent first: the run, the step, why it is theirs, its due, time left."""
    from flows.clock import in_zone, zone_label

    overdue = Load(who, waiting).overdue
    console.print(f"[bold]{escape(who)}[/]: {len(waiting)} open step(s)"
                  + (f", [red]{overdue} overdue[/]" if overdue else "") + ", most urgent first", soft_wrap=True)
    table = Table(box=None, pad_edge=False, show_edge=False, caption_justify="left",
                  caption=f"times {zone_label(in_zone(datetime.now(UTC), zone))}; time left in SOP time")
    for head in ("", "run", "SOP", "step", "why", "due", "left"):
        table.add_column(head, no_wrap=head not in ("SOP", "why"))
    for w in waiting:
        left = _left(w)
        table.add_row(f"[bold]P{w.run.priority}[/]", w.run.id, escape(_about(w)), escape(w.step.id),
                      escape(str(w.theirs)), short_clock(w.step.due_at, zone) if w.step.due_at else "—",
                      f"[red]{left}[/]" if w.overdue else escape(left))
    console.print(table)


def _people(found: list[Load]) -> None:
    """One line per person with open steps (``sop status --people``), the most overdue first."""
    if not found:
        console.print("no open step waits on anyone")
        return
    for load in found:
        console.print(_summary(load), soft_wrap=True)
    console.print("[dim]time left in SOP time; `sop status --for PERSON` lists a person's steps[/]")
