"""``sop silence …``: silence the SOPs' triggers for a while (a maintenance window, a planned launch), with a reason.

``sop silence --match alertname=X,brand=lumi --for 2h --reason … --as PERSON`` makes one;
``sop silence list`` shows those holding and the recent ones; ``sop silence end ID`` ends one
early. What a silence holds is recorded as ``trigger_silenced`` (see ``sop audit silenced``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli import app
from flows.cli.common import console, fail, print_json
from flows.cli.runs import _actor, _engine, _operator
from flows.clock import local_time
from flows.engine.silences import MATCHER_HINT, Silence, SilenceBook, SilenceNotFound, SilenceRefused
from flows.language.durations import DURATION_HINT, format_duration

silence = typer.Typer(name="silence", help="Silence the SOPs' triggers (alerts, events, metric rules) for a while, "
                                            "with a reason: `sop silence --match alertname=X --for 2h --reason …`.")
app.add_typer(silence, name="silence")

#: what each field of a refusal is called on this command line
OPTION = {"match": "--match", "for": "--for", "from": "--from", "reason": "--reason", "silence": "ID"}
HINT = {"match": MATCHER_HINT, "for": f"write {DURATION_HINT}", "reason": "pass --reason '…'"}


def _when(at: datetime, zone: str) -> str:
    """An instant as the site reads it (``settings.timezone``), as ``sop oncall`` shows its shifts."""
    return local_time(at, zone, seconds=True)


def _refused(exc: SilenceRefused, nothing: str) -> None:
    from flows.cli.common import err_console

    first = next(iter(exc.errors))
    for name, message in exc.errors.items():
        err_console.print(f"[red]✗[/] {OPTION.get(name, name)}: {escape(message)}")
    fail(nothing, HINT.get(first))


@silence.callback(invoke_without_command=True)
def create(
    ctx: typer.Context,
    match: Annotated[str | None, typer.Option("--match", "-m", help="label matchers: alertname=X,brand=lumi; "
                                                                       "name=~regex matches the whole value")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="how long, on the engine's clock: 2h, 30m, 1d")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="when it begins, for a maintenance window planned ahead: "
                                                            "2026-12-06T22:00 in the site's time zone (settings.timezone), "
                                                            "with an offset, or +2h (default: now)")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="why (recorded beside every trigger it silences)")] = None,
    as_: Annotated[str | None, typer.Option("--as", help="who decides: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Silence the triggers matching --match for --for: they start no run and are recorded as trigger_silenced.

    `alertname` is an alert's name, an event's name or a metric's name. Alertmanager's own
    silences are not replaced: this one also holds the SOPs' metric rules and events.
    """
    if ctx.invoked_subcommand is not None:
        return
    if match is None or for_ is None or reason is None:
        missing = [name for name, value in (("--match", match), ("--for", for_), ("--reason", reason)) if value is None]
        fail(f"a silence needs {', '.join(missing)}",
             "sop silence --match alertname=HighErrorRate,service=cart --for 2h --reason 'load test' --as li-wei")
    engine = _engine(prefect=False)
    zone = engine.site.settings.timezone
    try:
        who = _operator(engine, _actor(engine, as_), "silences")
        made = SilenceBook(engine.ledger, engine.clock).create(match, for_, reason, who, starts=from_, zone=zone)
    except SilenceRefused as exc:
        _refused(exc, "nothing was silenced")
    finally:
        engine.pager.close()
    if as_json:
        print_json(made.to_dict(engine.clock.now()))
        return
    begins = f"from {_when(made.starts_at, zone)} " if made.starts_at > made.created_at else ""
    console.print(f"[green]✓[/] silence [bold]{made.id}[/]: {escape(made.text)} {begins}until {_when(made.ends_at, zone)} "
                  f"({format_duration(made.ends_at - made.starts_at)}), by {made.created_by}")
    console.print(f"  end it early with `sop silence end {made.id} --reason …`")


@silence.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Silences holding now, then those that expired or were ended in the last 7 days."""
    engine = _engine(prefect=False)
    zone = engine.site.settings.timezone
    try:
        now = engine.clock.now()
        found = SilenceBook(engine.ledger, engine.clock).listing(now)
    finally:
        engine.pager.close()
    if as_json:
        print_json([s.to_dict(now) for s in found])
        return
    if not found:
        console.print("no silences now or in the last 7 days")
        return
    table = Table(title=f"{len(found)} silence(s)", title_justify="left", show_edge=False, caption=f"Times in {zone}.",
                  caption_justify="left")
    for column in ("id", "state", "matchers", "from", "until", "by", "reason"):
        table.add_column(column, no_wrap=column == "id")
    for s in found:
        table.add_row(s.id, _state(s, now), escape(s.text), _when(s.starts_at, zone), _when(s.until, zone), s.created_by,
                      escape(_why(s)))
    console.print(table)


def _state(s: Silence, now: datetime) -> str:
    state = s.state(now)
    return {"active": "[yellow]active[/]", "pending": "[cyan]pending[/]", "ended": "[dim]ended[/]",
            "expired": "[dim]expired[/]"}.get(state, state)


def _why(s: Silence) -> str:
    return s.reason + (f" (ended by {s.ended_by}: {s.end_reason})" if s.ended_by else "")


@silence.command("end")
def end_command(
    silence_id: Annotated[str, typer.Argument(metavar="ID", help="the silence's id (see `sop silence list`)")],
    reason: Annotated[str, typer.Option("--reason", help="why it ends early (recorded)")],
    as_: Annotated[str | None, typer.Option("--as", help="who ends it: a person id in config/ (default: the person this OS account is, else $SOP_ACTOR)")] = None,
) -> None:
    """End a silence now: the triggers it held start runs again."""
    engine: Any = _engine(prefect=False)
    try:
        who = _operator(engine, _actor(engine, as_), "silences")
        ended = SilenceBook(engine.ledger, engine.clock).end(silence_id, who, reason)
    except SilenceNotFound as exc:
        fail(str(exc))
    except SilenceRefused as exc:
        _refused(exc, "nothing was ended")
    finally:
        engine.pager.close()
    console.print(f"[green]✓[/] silence {ended.id} ended by {who.person}; what it matched starts runs again")
