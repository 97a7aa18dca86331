"""Commands for SOP authors: validate, list, show, graph, schema."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from flows.cli import app
from flows.cli.common import console, err_console, fail, library, print_json
from flows.engine.build import site_template_errors
from flows.language.durations import format_duration
from flows.language.library import project_root, validate_paths
from flows.language.outline import describe, mermaid, more_text, trigger_text
from flows.language.spec import json_schema


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="SOP or config files or folders (default: sops/ and config/)")] = None,
    config: Annotated[Path | None, typer.Option(help="config folder to check SOPs against")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only errors")] = False,
    oncall: Annotated[bool, typer.Option("--oncall", help="also report anyone on call while away (people's `away:`) "
                                                          "with no override covering it, over the next --days")] = False,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="how far --oncall looks ahead")] = 14,
) -> None:
    """Check SOP and config files; list every error with file:line:col. Exit 1 on any error."""
    root = project_root()
    targets = paths or [root / "sops", root / "config"]
    started = time.perf_counter()
    config_dir = config or root / "config"
    warnings: list[Any] = []
    errors, sops, configs = validate_paths(targets, config_dir, warnings=warnings)
    # site message templates, caught now rather than at send time: those of every config
    # folder given, and of the config folder the SOPs were checked against
    for folder in sorted({p.resolve() for p in [*targets, config_dir] if p.is_dir()}):
        errors.extend(site_template_errors(folder))
    if oncall and not errors:
        errors.extend(_away_errors(config_dir, days))
    elapsed = time.perf_counter() - started
    for error in errors:
        err_console.print(f"[red]✗[/] {escape(str(error))}", soft_wrap=True)
    for warning in [] if quiet else warnings:  # not errors: the exit status stands
        err_console.print(f"[yellow]![/] warning: {escape(str(warning))}", soft_wrap=True)
    files = len({e.file for e in errors})
    # SOP files given alone are checked against config_dir, which is read but not counted: say so, not "0 config"
    against = f" against {_shown(config_dir, root)}" if sops and not configs and config_dir.is_dir() else ""
    if errors:
        counted = (f"{sops} SOP file(s) checked{against}" if against
                   else f"{sops} SOP file(s), {configs} config file(s) checked")
        err_console.print(f"[bold red]{len(errors)} error(s)[/] in {files} file(s) ({counted} in {elapsed:.2f}s)")
        raise typer.Exit(1)
    for warning in _token_warnings(config_dir) if configs else []:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if not quiet:
        warned = f", {len(warnings)} warning(s) above" if warnings else ""
        counted = f"{sops} SOP file(s) valid{against}" if against else f"{sops} SOP file(s) and {configs} config file(s) valid"
        console.print(f"[green]✓[/] {counted} ({elapsed:.2f}s){warned}")


def _shown(folder: Path, root: Path) -> str:
    """``config/`` for the project's, else the folder as given."""
    try:
        return f"{folder.resolve().relative_to(root.resolve())}/"
    except ValueError:
        return f"{folder}/"


def _token_warnings(config_dir: Path) -> list[str]:
    """What the site's API tokens allow that it may not mean (a monitor token posting to every endpoint), each at
    the file, line and column of its token."""
    from flows.language.library import load_site
    from flows.language.loader import read_document, yaml_files

    docs = [doc for doc, _ in map(read_document, yaml_files([config_dir])) if doc is not None]
    site, _ = load_site(docs)
    if site is None:
        return []
    found = []
    for name, warning in site.token_warnings().items():
        doc = next((d for d in docs if name in ((d.data or {}).get("tokens") or {})), None)
        if doc is None:
            found.append(warning)
            continue
        line, column = doc.where(("tokens", name), prefer_key=True)
        found.append(f"{doc.file}:{line}:{column}: {warning}")
    return found


def _away_errors(config_dir: Path, days: int) -> list[Any]:
    """Everyone on call while away in the next ``days`` days, overrides of the ledger counted."""
    from datetime import timedelta

    from flows.engine.build import ledger_for
    from flows.engine.oncall import overrides_between
    from flows.language.library import load_site
    from flows.language.loader import read_document, yaml_files
    from flows.language.oncall import away_errors

    docs = [doc for doc, _ in map(read_document, yaml_files([config_dir])) if doc is not None]
    site, _ = load_site(docs)
    if site is None:
        return []
    ledger = ledger_for(library())
    now = ledger.clock.now()
    with ledger.read() as conn:
        overrides = overrides_between(conn, now, now + timedelta(days=days))
    return away_errors(site, docs, now, days, overrides)


def _reading(sop_id: str | None = None) -> Any:
    """The library for a command that only reads it (list, show, graph): an SOP file that does not validate is
    left out with a warning, so one author's unfinished draft hides no other SOP; the one asked for, if it is that
    file, is refused with its errors. ``sop validate`` still fails on it."""
    lib = library(lenient=True)
    if sop_id is not None and sop_id not in lib.sops:
        broken = [error for error in lib.left_out if Path(error.file).stem == sop_id]
        for error in broken:
            err_console.print(f"[red]✗[/] {escape(str(error))}", soft_wrap=True)
        if broken:
            fail(f"{sop_id} does not validate ({len(broken)} error(s))", "fix it, then run `sop validate`")
    return lib


@app.command("list")
def list_sops(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List the SOPs in sops/ by priority."""
    lib = _reading()
    rows = sorted(lib.sops.values(), key=lambda s: (s.sop.priority, s.sop.id))
    if as_json:
        print_json([{"id": s.sop.id, "title": s.sop.title, "class": s.sop.class_, "priority": s.sop.priority,
                     "owner": s.sop.owner, "deadline": format_duration(s.sop.deadline) if s.sop.deadline else None,
                     "steps": len(s.sop.steps), "triggers": [trigger_text(t) for t in s.sop.triggers],
                     "version": s.sop.version, "hash": s.text_hash} for s in rows])
        return
    table = Table(title=f"{len(rows)} SOPs", title_justify="left")
    widest = max((len(s.sop.id) for s in rows), default=2)
    for col in ("P", "id", "title", "class", "owner", "deadline", "steps", "triggers"):  # the id is typed next: whole
        table.add_column(col, no_wrap=col in ("P", "id"), min_width=widest if col == "id" else None)
    for s in rows:
        table.add_row(f"P{s.sop.priority}", s.sop.id, escape(s.sop.title), s.sop.class_, escape(s.sop.owner),
                      format_duration(s.sop.deadline) if s.sop.deadline else "—", str(len(s.sop.steps)),
                      escape("; ".join(trigger_text(t) for t in s.sop.triggers) or "manual"))
    console.print(table)


def _next_firings(sop: Any, zone: str) -> dict[str, str]:
    """When each of the SOP's schedules fires next, as the site reads it (``sop deploy`` gives Prefect these
    schedules; a stack started before a change of them runs the old ones until it restarts)."""
    from croniter import croniter

    from flows.clock import local_time

    out = {}
    for trigger in sop.schedules():
        start = datetime.now(ZoneInfo(trigger.timezone))
        out[trigger.schedule] = local_time(croniter(trigger.schedule, start).get_next(datetime), zone)
    return out


@app.command()
def show(
    sop_id: Annotated[str, typer.Argument(metavar="ID", help="SOP id")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show an SOP: steps, assignees, dues and the escalation ladder at absolute offsets."""
    lib = _reading(sop_id)
    try:
        loaded = lib.get(sop_id)
    except KeyError as exc:
        fail(str(exc.args[0]))
    data = describe(loaded.sop, site=lib.site)
    data["hash"] = loaded.text_hash
    data["next_scheduled"] = _next_firings(loaded.sop, lib.site.settings.timezone)
    data["cadence"] = _cadence(loaded.sop, lib.site)
    if as_json:
        print_json(data)
        return
    # every text of the SOP is the author's: printed as written, never read as console markup
    head = f"[bold]{data['id']}[/] — {escape(data['title'])}  [dim]{data['priority']} {data['class']}, owner {escape(data['owner'])}"
    head += f", deadline {data['deadline']}" if data["deadline"] else ""
    head += escape(f" (business time on {data['calendar']})") + "[/]" if data["deadline"] and data["calendar"] else "[/]"
    tree = Tree(head)
    if data["triggers"]:
        tree.add(escape("triggers: " + "; ".join(data["triggers"])))
    for cron, shown in data["next_scheduled"].items():
        tree.add(escape(f"next by schedule {cron}: {shown}"))
    if data["inputs"]:
        tree.add(escape("inputs: " + ", ".join(f"{k} ({v.get('type', 'string')})" for k, v in data["inputs"].items())))
    if cadence := data["cadence"]:
        tree.add(escape(f"status updates every {cadence['every']} from {', '.join(cadence['notify'])}"
                        + (f', asking "{cadence["message"]}"' if cadence["message"] else "")
                        + ("" if cadence["own"] else f" (the {data['class']} class's default in settings.cadences; "
                                                     "give the SOP a `cadence:` of its own to change it)")))
    for step in data["steps"]:
        label = f"[bold cyan]{step['id']}[/] {escape(step['title'])}  [dim]{escape(step['detail'])}[/]"
        if step["due"]:
            label += f"  [yellow]due {step['due']}[/]"
        if step["calendar"] and (step["due"] or step["escalation"]):  # 4h of office hours may be due the next day
            label += escape(f"  (business time on {step['calendar']})")
        node = tree.add(label)
        if step["needs"]:
            node.add("after: " + ", ".join(step["needs"]))
        if step["when"]:
            node.add(escape(f"when: {step['when']}"))
        if step["form"]:
            node.add(escape("form: " + ", ".join(step["form"])))
        if step["on_timeout"]:
            node.add(f"on timeout: {step['on_timeout']}")
        if step["holds"]:
            node.add(escape(f"may be put on hold for: {', '.join(step['holds']['waiting_for'])} (sop hold --for; "
                            f"at most {step['holds']['max_hold']}, then it escalates)"))
        for rung in step["escalation"]:
            node.add(f"[magenta]+{rung['after_ready']}[/] {rung['message']} → {escape(', '.join(rung['notify']))}")
            if more := more_text(rung):
                node.add(f"[dim]{more}[/]")
    console.print(tree)


def _cadence(sop: Any, site: Any) -> dict[str, Any] | None:
    """The status cadence a run of ``sop`` keeps (its own, else its class's default), and whether it is its own."""
    from flows.language.cadence import effective_cadence

    cadence = effective_cadence(sop, site)
    if cadence is None:
        return None
    return {"every": format_duration(cadence.every), "notify": cadence.notify, "message": cadence.message,
            "own": sop.cadence is not None}


@app.command()
def graph(sop_id: Annotated[str, typer.Argument(metavar="ID", help="SOP id")]) -> None:
    """Print the step DAG as a Mermaid flowchart."""
    lib = _reading(sop_id)
    try:
        sop = lib.get(sop_id).sop
    except KeyError as exc:
        fail(str(exc.args[0]))
    print(mermaid(sop))


@app.command()
def schema(output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file")] = None) -> None:
    """Print the JSON Schema of the SOP format (for editors: yaml-language-server)."""
    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}")
    else:
        print(text, end="")
