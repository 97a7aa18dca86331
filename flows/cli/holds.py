"""``sop hold`` and ``sop release``: stop a step's clock while it waits for someone outside, and start it again."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import app
from flows.cli.common import console
from flows.cli.runs import _acting


def _local(instant: object, zone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if isinstance(instant, datetime) else "-"


@app.command()
def hold(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    reason: Annotated[str, typer.Option("--for", help="what it waits for: one of the SOP's `waiting_for`")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who holds it: a person id in config/ (default $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="what exactly you wait for (recorded)")] = "",
) -> None:
    """Put a step on hold: its clock, reminders and escalations stop until it is released (or its max_hold passes)."""
    with _acting(actor, f"`{step_id}` was not put on hold") as (engine, who):
        until = engine.hold(run_id, step_id, who, reason, note)
        zone = engine.site.settings.timezone
    console.print(f"[green]✓[/] {step_id} is on hold ({reason}); unless released it escalates at {_local(until, zone)}")


@app.command()
def release(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id (or a unique prefix)")],
    step_id: Annotated[str, typer.Argument(metavar="STEP", help="step id")],
    actor: Annotated[str | None, typer.Option("--as", "--actor", help="who releases it: a person id in config/ (default $SOP_ACTOR)")] = None,
    note: Annotated[str, typer.Option(help="what came (recorded)")] = "",
) -> None:
    """Release a step's hold: its clock runs again, its due instant moved by the time held."""
    with _acting(actor, f"`{step_id}` was not released") as (engine, who):
        due = engine.release(run_id, step_id, who, note)
        zone = engine.site.settings.timezone
    console.print(f"[green]✓[/] {step_id} is released; due {_local(due, zone)}")
