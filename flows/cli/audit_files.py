"""Where ``sop audit``'s exports go: each ``--csv``, ``--json`` or ``--html`` to its FILE, written whole or not
at all, or to stdout (``-``, or the option given alone)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

import click
from typer.core import TyperCommand

from flows.cli.common import console, fail

STDOUT = "-"


class FileOrStdout(TyperCommand):
    """A command whose ``--csv`` and ``--json`` take a FILE or nothing: given alone (at the end, or before another
    option), they mean stdout, ``-``, so ``sop audit runs --csv`` (a flag once) and ``sop audit report --csv FILE``
    read alike. Only for commands with no positional argument: one after the option would be its FILE."""

    OPTIONAL_VALUE = ("--csv", "--json")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                given += args[i:]
                break
            given.append(arg)
            following = args[i + 1] if i + 1 < len(args) else None
            if arg in self.OPTIONAL_VALUE and (following is None or (following.startswith("-") and following != STDOUT)):
                given.append(STDOUT)
        return super().parse_args(ctx, given)


def write_exports(outputs: dict[str, tuple[str | None, Callable[[], str]]]) -> bool:
    """Write each export asked for (label → (FILE or ``-``, its text)); True when one went to stdout, where a
    table would garble it. Two to stdout are refused: one stream cannot hold both."""
    asked = {label: (path, text) for label, (path, text) in outputs.items() if path}
    to_stdout = [label for label, (path, _) in asked.items() if path == STDOUT]
    if len(to_stdout) > 1:
        fail(f"{' and '.join(f'--{label.lower()}' for label in to_stdout)} would all write to stdout",
             f"give all but one a FILE, e.g. --{to_stdout[-1].lower()} out.{to_stdout[-1].lower()}")
    for path, text in asked.values():
        write_export(path, text())
    return bool(to_stdout)


def say_written(outputs: dict[str, str | None]) -> None:
    """Say which files were written (label → path)."""
    for label, path in outputs.items():
        if path and path != STDOUT:
            console.print(f"[green]✓[/] {label} written to {path}")


def write_export(path: str, text: str) -> None:
    """Write an export whole or not at all: into a file beside it, flushed to disk, then renamed
    over it, so an earlier report at that path is never left half-overwritten (a full disk,
    Ctrl-C, a power cut). A link's own file is the one replaced, with its permissions kept; a
    pipe, a terminal or ``/dev/stdout`` is written to as a stream."""
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    if target.is_dir():
        fail(f"cannot write {path}: it is a folder", f"give a file name in it, e.g. {target / 'report.html'}")
    if not target.parent.exists():
        fail(f"cannot write {path}: folder {target.parent} does not exist", "create it first, or pick another path")
    try:
        st = os.stat(target)  # through a link
    except FileNotFoundError:
        st = None
    except OSError as exc:
        _cannot_write(path, exc)
    real = Path(os.path.realpath(target))
    if st is not None and not stat.S_ISREG(st.st_mode):  # a pipe, a terminal, /dev/fd/N: nothing to replace
        _write_in_place(path, target, text)  # as named: /dev/fd/N resolves to no openable name
        return
    partial = real.with_name(f".{real.name[:100]}.{os.getpid()}.partial")
    try:
        out = open(partial, "w", encoding="utf-8")  # noqa: SIM115 - closed below, on every path
    except PermissionError as exc:
        if st is None:
            _cannot_write(path, exc)
        _write_in_place(path, real, text)  # a writable file in a folder we may not add to
        return
    except OSError as exc:
        _cannot_write(path, exc)
    try:
        with out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if st is not None:
            os.chmod(partial, stat.S_IMODE(st.st_mode))  # a report kept private stays private
        os.replace(partial, real)
    except (OSError, UnicodeError) as exc:
        with suppress(OSError):
            partial.unlink()
        _cannot_write(path, exc)
    except BaseException:
        with suppress(OSError):
            partial.unlink()
        raise


def _write_in_place(path: str, real: Path, text: str) -> None:
    try:
        with open(real, "w", encoding="utf-8") as out:
            out.write(text)
    except (OSError, UnicodeError) as exc:
        _cannot_write(path, exc)


def _cannot_write(path: str, exc: BaseException) -> NoReturn:
    fail(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}", "check the path, its permissions and the free space")
