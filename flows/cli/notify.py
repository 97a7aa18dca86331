"""``sop notify-test``: send a test message to a person, role or channel and show each result."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli import app
from flows.cli.common import console, err_console, fail, library, print_json
from flows.language.config import Site
from flows.language.library import load_site, project_root
from flows.language.loader import read_document, yaml_files
from notifications import UnknownTarget, deliver, recipients, test_message


@app.command("notify-test")
def notify_test(
    target: Annotated[
        str, typer.Argument(metavar="PERSON|ROLE|CHANNEL", help="a name from config/ (or role:x, person:x, channel:x)")
    ],
    backup: Annotated[bool, typer.Option("--backup", help="for a role, the backup too")] = False,
    fallback: Annotated[
        bool,
        typer.Option(
            "--fallback",
            help="stop at a person's first working contact, as real delivery does (default: try every contact)",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds per attempt")] = 10.0,
    retries: Annotated[int, typer.Option(help="retries after a failed attempt")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Send a test message and print what each destination answered. Exit 1 if all failed."""
    site = site_config()
    try:
        people = recipients([target], site, backup=backup, on_call=_on_call(site))
    except UnknownTarget as exc:
        fail(str(exc), "run `sop validate config/` or check the spelling")
    if not fallback:
        people = [replace(r, fallback=False) for r in people]
    sent_at = datetime.now(UTC)
    results = deliver(
        lambda r: test_message(r, f"`sop notify-test {target}`", sent_at),
        people,
        timeout=timeout,
        retries=retries,
        inbox_dir=site.settings.inbox_dir,
    )
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        table = Table(title=f"notify-test {target}", title_justify="left")
        for column in ("recipient", "via", "#", "destination", "result", "attempts", "ms", "error"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(
                r.recipient,
                r.via or r.recipient_kind,
                str(r.contact),
                r.destination,
                "[green]ok[/]" if r.ok else "[red]failed[/]",
                str(r.attempts),
                f"{r.latency * 1000:.0f}",
                r.error or "",
            )
        console.print(table)
    if not any(r.ok for r in results):
        err_console.print(f"[bold red]every destination failed[/] ({len(results)} tried)")
        raise typer.Exit(1)


def _on_call(site: Site) -> Any:
    """Who a role means now, as a page would reach it: its rotation or fixed people, as the ledger's overrides leave
    them (an override applies to a fixed role too)."""
    from flows.language.oncall import OnCall

    def lookup(role: str) -> OnCall:
        from datetime import UTC, datetime

        from flows.engine.build import ledger_for
        from flows.engine.oncall import on_call_now
        from flows.language.oncall import on_call

        try:  # the overrides are in the ledger: read it as it is (no migration, an unrelated SOP error ignored)
            return on_call_now(site, ledger_for(library(lenient=True), migrate=False), role)
        except Exception as exc:  # noqa: BLE001 - a contact test still goes out, to config's people
            why = " ".join(str(getattr(exc, "orig", None) or exc).split())
            if "no such table" not in why and "does not exist" not in why:  # a ledger never used has no overrides
                from flows.cli.common import err_console

                err_console.print(f"[yellow]warning:[/] on-call overrides not read ({why[:160]}): {role} as config/ says")
            return on_call(role, site.roles[role], datetime.now(UTC), [])

    return lookup


def site_config(root: Path | None = None) -> Site:
    """The validated site config in ``config/`` (the SOPs are not needed to test a contact), or exit 1."""
    folder = (root or project_root()) / "config"
    docs, errors = [], []
    for file in yaml_files([folder]) if folder.is_dir() else []:
        doc, parse_errors = read_document(file)
        errors.extend(parse_errors)
        if doc is not None:
            docs.append(doc)
    if not docs and not errors:
        fail(f"no site config in {folder}", "run the command from the project folder, or set SOP_HOME")
    site, site_errors = load_site(docs)
    for error in [*errors, *site_errors]:
        err_console.print(f"[red]✗[/] {escape(str(error))}", soft_wrap=True)
    if site is None or errors:
        fail("the site config does not validate", "fix it, then run `sop validate config/`")
    return site
