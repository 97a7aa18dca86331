"""``sop drill`` and ``sop demo``: an SOP on compressed time with simulated responders."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated

import typer
from rich.table import Table

from flows.cli import app
from flows.cli.common import console, fail, fail_all, library
from flows.cli.runs import _pairs
from flows.engine.transitions import InputRefused, check_inputs
from flows.language.durations import SPEED_MAX, SPEED_MIN, check_speed, format_duration
from flows.runtime.drill import Drill, DrillResult, TimelineEntry


def _clock(offset) -> str:  # noqa: ANN001 - timedelta
    seconds = int(offset.total_seconds())
    return f"+{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _print_entry(entry: TimelineEntry) -> None:
    colour = {"escalation": "magenta", "step_overdue": "red", "run_overdue": "red", "step_done": "green",
              "run_finished": "bold green", "step_failed": "red", "drill_error": "red"}.get(entry.kind, "white")
    console.print(f"[dim]{_clock(entry.offset)}[/] [cyan]{(entry.step or '·'):<16}[/] [{colour}]{entry.detail}[/]",
                  soft_wrap=True)


def _summary(result: DrillResult) -> None:
    table = Table(title=f"drill of run {result.run_id}: {result.outcome}", title_justify="left")
    for col in ("step", "state", "by", "due", "took", "deadline", "escalations"):
        table.add_column(col)
    for row in result.steps:
        met = {True: "[green]met[/]", False: "[red]missed[/]", None: "—"}[row["deadline_met"]]
        table.add_row(row["step"], row["state"], row["actor"] or "", format_duration(row["due"]) if row["due"] else "",
                      format_duration(row["took"]) if row["took"] else "", met, str(row["escalations"] or ""))
    console.print(table)
    met = sum(1 for r in result.steps if r["deadline_met"] is True)
    missed = sum(1 for r in result.steps if r["deadline_met"] is False)
    deadline = {True: "met", False: "missed", None: "none set"}[result.deadline_met]
    console.print(f"deadlines met {met}, missed {missed}; escalations {result.escalations}; run deadline {deadline}; "
                  f"{result.wall_seconds:.0f}s of wall time")


def drill_sop(sop_id: str, speed: float, late: list[str], params: dict[str, str], seed: int | None) -> DrillResult:
    """Run a drill, starting the embedded stack first when no Prefect server answers."""
    from flows import runtime
    from flows.prefect.names import prefect_api_url
    from flows.runtime.serve import Stack, healthy

    lib = library()
    if sop_id not in lib.sops:
        fail(f"unknown SOP `{sop_id}`", f"known: {', '.join(sorted(lib.sops))}")
    unknown = [s for s in late if s not in {st.id for st in lib.sops[sop_id].sop.steps}]
    if unknown:
        fail(f"--late names unknown step(s) {', '.join(unknown)} of {sop_id}")
    try:  # the inputs first, as `sop run` does: a missing or mistyped one is told before the stack starts
        check_inputs(lib.sops[sop_id].sop, params)
    except InputRefused as exc:
        fail_all(exc.problems, f"the inputs do not fit {sop_id}", f"give them with -p name=value; see `sop show {sop_id}`")
    with ExitStack() as stack:
        if not healthy(prefect_api_url(lib)):
            embedded = Stack(library=lib, api=False, progress=lambda m: console.print(f"[dim]stack:[/] {m}"))
            stack.callback(embedded.stop)
            embedded.start()
            engine = embedded.engine
        else:
            engine = runtime.engine(library=lib)
        console.print(f"[bold]drill[/] {sop_id} at ×{speed:g} (1h of playbook = {3600 / speed:.0f}s)"
                      + (f", late: {', '.join(late)}" if late else ""))
        drill = Drill(engine, sop_id, speed, late=set(late), inputs=params, seed=seed, on_entry=_print_entry)
        result = drill.run()
        engine.pager.close()
    _summary(result)
    return result


@app.command()
def drill(
    sop_id: Annotated[str, typer.Argument(metavar="ID", help="SOP id")],
    speed: Annotated[float, typer.Option(help=f"time compression, {SPEED_MIN:g} to {SPEED_MAX:g}: 120 plays 2 hours in 1 minute")] = 120.0,
    late: Annotated[list[str] | None, typer.Option(help="a step answered after its due (repeatable)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="input as key=value")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed for the responders' delays")] = None,
) -> None:
    """Play an SOP on compressed time with simulated responders; print a timeline and a summary."""
    if (problem := check_speed(speed)) is not None:
        fail(f"--{problem}", "e.g. --speed 120 plays 2 hours in 1 minute")
    result = drill_sop(sop_id, speed, late or [], _pairs(param, "-p"), seed)
    if result.outcome not in ("done", "rejected"):
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """The crisis-PR playbook, 2 hours in about a minute, one step late and escalated."""
    drill_sop("crisis-pr", 120.0, ["facts"], {"brand": "lumi", "mentions_per_day": "140"}, seed=7)
