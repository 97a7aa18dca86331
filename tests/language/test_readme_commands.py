"""Every `sop` command the README and docs/ show exists, with every option it is shown with: a reader who copies
one gets the command, not "No such option"."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import typer

from flows.cli import app

DOCS = ["README.md", "docs/running.md", "docs/audit.md", "docs/oncall.md", "docs/people.md", "docs/team.md",
        "docs/notifications.md"]


def _shown(repo_root: Path) -> list[tuple[str, list[str]]]:
    """(where, argv) of each `sop …` command in the docs' shell blocks, placeholders left as they are; a line with
    two (`sop silence list; sop silence end …`) gives both."""
    found = []
    for name in DOCS:
        text = (repo_root / name).read_text()
        lines = [line.split("  #", 1)[0] for block in re.findall(r"```(?:sh|bash|)\n(.*?)```", text, re.S)
                 for line in block.splitlines()]
        for line in (part.strip() for whole in lines for part in whole.split("; ")):
            match = re.match(r"^(?:\S*/)?sop (.*)$", line)
            if not match or "<<" in line:
                continue
            words = match.group(1).replace("…", "").replace("[", " ").replace("]", " ")
            try:
                argv = shlex.split(words)
            except ValueError:
                continue
            found.append((f"{name}: {line}", argv))
    return found


@functools.cache
def _group() -> Any:
    return typer.main.get_command(app)  # every command module loaded once, not once per line


def _command(argv: list[str]) -> tuple[click.Command, list[str]]:
    group = _group()
    ctx = click.Context(group)
    command: click.Command = group
    rest = list(argv)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):  # a group (Typer's own click)
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        command, rest = sub, rest[1:]
    return command, rest


def test_the_docs_show_real_commands_with_real_options(repo_root: Path) -> None:
    shown = _shown(repo_root)
    assert len(shown) > 25, "the docs' commands were not found: update this test's reading of them"
    wrong = []
    for where, argv in shown:
        command, rest = _command(argv)
        if command.name == "sop":
            wrong.append(f"{where}: no command `{argv[0] if argv else ''}`")
            continue
        if hasattr(command, "get_command") and rest and not rest[0].startswith("-") and not command.params:
            wrong.append(f"{where}: no command `{rest[0]}` in `sop {command.name}`")  # `sop audit reprot`
            continue
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in rest:
            option = word.split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", option) and option not in known:
                wrong.append(f"{where}: `{option}` is no option of `sop {command.name}`")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("line", ["sop silence --match x --forr 2h", "sop nosuch", "sop audit reprot --since 7d",
                                  "sop run crisis-pr -q brand=lumi"])
def test_a_wrong_command_is_caught(line: str, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(f"```sh\n{line}\n```\n" * 26)
    for name in DOCS[1:]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    with pytest.raises(AssertionError, match="no option|no command"):  # noqa: PT012
        test_the_docs_show_real_commands_with_real_options(tmp_path)
