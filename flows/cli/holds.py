"""``sop hold`` and ``sop release``: stop a step's clock (or a whole run's) while it waits for someone outside, and
start it again."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import app
from flows.cli.common import console
from flows.cli.runs import _acting


def _local(instant: object, zone: str) -> str:
    from datetime import datetime

    from flows.clock import local_time

    return local_time(instant, zone) if isinstance(instant, datetime) else "-"


@app.command()
def hold(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    reason: Annotated[str, typer.Option("--for", help="what it waits for: one of the SOP's `waiting_for`")],
    step_id: Annotated[str | None, typer.Argument(metavar="STEP", help="step id; none: the whole run")] = None,
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who holds it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="what exactly you wait for (recorded)")] = "",
) -> None:
    """Put a step (or, with no STEP, the whole run: its deadline and every active step) on hold: its clock,
    reminders and escalations stop until it is released (or its max_hold passes)."""
    what = f"`{step_id}`" if step_id else f"run {run_id}"
    with _acting(actor, f"{what} was not put on hold") as (engine, who):
        until = (engine.hold(run_id, step_id, who, reason, note) if step_id
                 else engine.hold_run(run_id, who, reason, note))
        zone = engine.site.settings.timezone
    console.print(f"[green]✓[/] {step_id or 'the run'} is on hold ({reason}); unless released it escalates at "
                  f"{_local(until, zone)}")


@app.command()
def release(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str | None, typer.Argument(metavar="STEP", help="step id; none: the whole run")] = None,
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who releases it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="what came (recorded)")] = "",
) -> None:
    """Release a step's hold (or, with no STEP, the run's): its clock runs again, its due instant (the run's
    deadline) moved by the time held."""
    what = f"`{step_id}`" if step_id else f"run {run_id}"
    with _acting(actor, f"{what} was not released") as (engine, who):
        due = engine.release(run_id, step_id, who, note) if step_id else engine.release_run(run_id, who, note)
        zone = engine.site.settings.timezone
    console.print(f"[green]✓[/] {step_id or 'the run'} is released; {'due' if step_id else 'deadline'} "
                  f"{_local(due, zone)}")
