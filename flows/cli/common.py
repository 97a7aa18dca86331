"""What every command shares: the console, loading the library with readable errors."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.markup import escape

from flows.language.library import Library, project_root
from flows.language.loader import SpecError, SpecInvalid

#: how wide the consoles draw when their stream is not a terminal (a file, `less`, a pipe) and ``COLUMNS`` does not
#: say: Rich's default there, 80 columns, cut a wide table's cells to "…"; no table of ours needs more than this
PIPED_WIDTH = 400


def _console(stderr: bool = False) -> Console:
    """A console for stdout or stderr, as wide as its terminal; piped, :data:`PIPED_WIDTH` unless ``COLUMNS`` is set,
    so ``sop audit … > file`` keeps every column whole (``--csv``/``--json`` are whole anyway)."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        piped = not stream.isatty()
    except (AttributeError, ValueError):  # no stream, or a closed one
        piped = True
    wide = piped and not os.environ.get("COLUMNS", "").strip().isdigit()
    if not wide:
        return Console(stderr=stderr, highlight=False)
    return Console(file=_Trimmed(stderr), highlight=False, width=PIPED_WIDTH)


class _Trimmed:
    """``sys.stdout`` (or ``sys.stderr``), whichever it is when written to (a test's runner swaps it), its lines
    without their trailing spaces: drawn :data:`PIPED_WIDTH` wide, a title or a rule is padded to the width, and a
    file or ``grep`` should not get lines of 400 characters."""

    def __init__(self, stderr: bool) -> None:
        self.stderr = stderr

    @property
    def stream(self) -> Any:
        return sys.stderr if self.stderr else sys.stdout

    def write(self, text: str) -> int:
        return self.stream.write(_TRAILING.sub("\n", text))

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


_TRAILING = re.compile(r"[ \t]+\n")


console = _console()
err_console = _console(stderr=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error (and a hint) to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)
    raise typer.Exit(code)


def fail_all(problems: list[str], message: str, hint: str | None = None) -> NoReturn:
    """Print each problem, then fail with a summary (every problem shown, not only the first)."""
    for problem in problems:
        err_console.print(f"[red]✗[/] {escape(problem)}", soft_wrap=True)
    fail(message, hint)


def library(root: Path | None = None, lenient: bool = False) -> Library:
    """The validated library, or exit 1 listing every error. ``lenient`` (commands acting on runs under way): an
    SOP file with errors is left out with a warning instead (``load_library``); config/ must still be valid."""
    try:
        from flows.engine.build import runnable_library

        loaded = runnable_library(root or project_root(), lenient=lenient)
    except SpecInvalid as exc:
        refuse_library(exc)
    first: dict[str, SpecError] = {}  # each file left out, by its first error
    for error in loaded.left_out:
        first.setdefault(error.file, error)
    for file, error in first.items():
        err_console.print(f"[yellow]warning:[/] {escape(file)} is left out: it does not validate "
                          f"({escape(str(error))}; `sop validate` shows every error)", soft_wrap=True)
    return loaded


def refuse_library(exc: SpecInvalid) -> NoReturn:
    """Exit 1 listing every error of an invalid library (file:line:col each)."""
    for error in exc.errors:
        err_console.print(f"[red]✗[/] {escape(str(error))}", soft_wrap=True)
    fail(f"{len(exc.errors)} error(s) in sops/ or config/", "fix them, then run `sop validate`")


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colours."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def short_clock(instant: datetime, zone: str) -> str:
    """An instant on the site's clock, short: ``14:20`` today, ``12-09 14:20`` another day."""
    from flows.clock import in_zone

    local, today = in_zone(instant, zone), in_zone(datetime.now(UTC), zone)
    return local.strftime("%H:%M" if local.date() == today.date() else "%m-%d %H:%M")


#: the spaces between two columns of a table without a box (``Table(box=None)``: one cell of padding on each side)
COLUMN_GAP = 2


def one_line_width(heads: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """How wide a table without a box is when each of its plain cells (and heads) is on one line: whether it fits
    the terminal as it is, or which of its columns must give way."""
    return sum(max(cell_len(cell) for cell in (head, *(row[i] for row in rows))) for i, head in enumerate(heads)) \
        + COLUMN_GAP * (len(heads) - 1)


def cut(text: str, room: int) -> str:
    """``text`` in ``room`` terminal cells: whole when it fits, else its start and "…" (a cell given way on a
    narrow terminal reads as cut, and the line does not wrap)."""
    if cell_len(text) <= room:
        return text
    return set_cell_size(text, max(room - 1, 0)).rstrip() + "…"
