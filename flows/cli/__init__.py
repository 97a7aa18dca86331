"""The ``sop`` command: one Typer app, commands grouped by audience in sibling modules.

The top layer. Owns the command line: arguments and options, exit codes and error
messages, what a terminal shows (tables, colours, progress bars; e.g.
:mod:`flows.cli.audit_views`) and the files an export writes (e.g.
:mod:`flows.cli.audit_files`). What a command does lives in the layers below, so the API
and the CLI answer alike.

May import every layer: ``flows.runtime``, ``flows.api``, ``flows.audit``,
``flows.prefect``, ``flows.triggers``, ``flows.engine``, ``notifications``,
``flows.ledger``, ``flows.language``, ``flows.clock``. Nothing imports it: the ``sop``
console script and ``python -m flows`` start here.

A command's module is imported when that command runs (or when help lists them all):
``sop validate`` need not load the ledger, the audit queries and Apprise to check a file.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

#: every command, in the order help lists them, with the module (``flows.cli.<name>``) defining it
COMMANDS = {
    **dict.fromkeys(("serve", "deploy", "executor", "timers", "nudger", "pager"), "services"),
    "run": "runs",
    "status": "status",
    **dict.fromkeys(("done", "reject", "take", "hand-over", "update", "snooze", "need-help", "cancel"), "runs"),
    **dict.fromkeys(("hold", "release"), "holds"),
    **dict.fromkeys(("drill", "demo"), "drill"),
    **dict.fromkeys(("validate", "list", "show", "graph", "schema"), "library"),
    "notify-test": "notify",
    "oncall": "oncall",
    "silence": "silences",
    "audit": "audit",
}


class LazyCommands(TyperGroup):
    """A command group that imports a command's module only when the command is looked up."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:  # an unknown name loads them all: a typo gets a did-you-mean
            self._load(*([COMMANDS[cmd_name]] if cmd_name in COMMANDS else COMMANDS.values()))
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load(*COMMANDS.values())
        return [*(name for name in COMMANDS if name in self.commands),
                *(name for name in self.commands if name not in COMMANDS)]

    def _load(self, *modules: str) -> None:
        for module in dict.fromkeys(modules):
            importlib.import_module(f"flows.cli.{module}")  # its decorators register on `app`
        self.commands.update(typer.main.get_group(app).commands)


#: how ``--help`` names an option's value: words, as click did (Typer 0.29 prints ``<str>``, ``<list[str]>``, and
#: ``<bool>`` even beside a flag, which takes no value)
TYPE_WORDS = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "NUMBER", "<list[str]>": "TEXT", "<str>...": "TEXT",
              "<float range>": "NUMBER", "<int range>": "INTEGER"}


def _help_in_words() -> None:
    from typer import core

    typed = getattr(core.TyperOption, "display_type_rich", None)
    if typed is None or not hasattr(core, "TyperArgument"):  # another Typer than the pinned one: its own help
        return

    def shown(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or self.name == "help":
            return None
        said = typed(self, ctx)
        return TYPE_WORDS.get(said, said) if isinstance(said, str) else said

    core.TyperOption.display_type_rich = shown  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]  # its name says it


_help_in_words()

app = typer.Typer(
    name="sop",
    cls=LazyCommands,
    help="Run standard operating procedures as code: validate, run, respond, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"sop {version('sops-as-code')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            print("sop (not installed: run `make install`)")
        raise typer.Exit()


@app.callback()
def _group(
    show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                      help="Print the version and exit."),
) -> None:
    # with no command module imported yet, Typer needs a callback to build a group at all
    pass


def main() -> None:
    """Console-script entry point; a ledger it cannot open is one line on stderr, exit 1."""
    import contextlib
    import faulthandler
    import signal

    from flows.engine.secrets import SecretUnsafe
    from flows.ledger.url import LedgerUnavailable

    # `kill -USR1 PID` writes every thread's stack to stderr (a service's log): what a process that will not stop is
    # doing, without a debugger
    with contextlib.suppress(RuntimeError, OSError, ValueError):  # no usable stderr (`2>&-`): no dumps
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app()
    except (LedgerUnavailable, SecretUnsafe) as exc:  # one line, not a traceback
        from rich.markup import escape

        from flows.cli.common import err_console

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(1) from None
    except SystemExit as exc:
        _leave_resumes_to_the_nudger(exc.code)
        raise
    _leave_resumes_to_the_nudger(0)


class _HeldWarnings(logging.Handler):
    """Our warnings in a command that acts on runs (``sop done``, ``sop cancel`` and the like): a resume or a cancel
    Prefect did not take is a log line for a log file, and here one sentence at the end (:func:`_leave_resumes_to_the_nudger`)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_HELD = _HeldWarnings()


def hold_warnings() -> None:
    """From now on in this process, our warnings are held to be told in words at the end (and kept in
    ``var/log/cli.log``) instead of printed as log lines. Not for services: their logs are their output."""
    ours = logging.getLogger("sop")
    if _HELD not in ours.handlers:
        ours.addHandler(_HELD)
        ours.propagate = False


def _leave_resumes_to_the_nudger(code: int | str | None) -> None:
    """A report is recorded before its run's flow run is resumed (on a thread): give the resume a few seconds,
    then leave it to ``sop serve``'s nudger (the run is flagged in the ledger) rather than wait on a Prefect
    that does not answer. Tells what was held (:func:`hold_warnings`); exits at once in that case, with ``code``."""
    settled = True
    if "flows.prefect.launcher" in sys.modules:
        from flows.prefect.launcher import RESUME_WAIT, settle_nudges

        settled = settle_nudges(RESUME_WAIT)
    if settled and not _HELD.records:
        return
    from flows.cli.common import err_console
    from flows.cli.told import in_words
    from flows.language.library import project_root

    for line in in_words(_HELD.records, project_root(), resume_pending=not settled):
        err_console.print(line, soft_wrap=True, markup=False)
    if settled:
        return
    if isinstance(code, str):
        print(code, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
