"""The ``sop`` command: one Typer app, commands grouped by audience in sibling modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sop",
    help="Run standard operating procedures as code: validate, run, respond, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from flows.cli import audit as _audit  # noqa: E402,F401  (registers `sop audit …`)
from flows.cli import drill as _drill  # noqa: E402,F401  (registers commands)
from flows.cli import library as _library  # noqa: E402,F401
from flows.cli import notify as _notify  # noqa: E402,F401  (registers commands)
from flows.cli import runs as _runs  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
