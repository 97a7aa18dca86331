"""docs/team.md as data: the processes table, the ``createdb`` lines, the environment file it points every
process at (``config/systemd/sop.env.example``) and the systemd units' ``ExecStart``, read from the files
themselves, so that what runs (bench/team_recipe.py, tests/team/) is what the page says.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "team.md"
ENV_FILE = ROOT / "config" / "systemd" / "sop.env.example"
UNITS = ROOT / "config" / "systemd"
BIN = Path(sys.executable).parent
#: where the page's systemd units expect the checkout
DOCUMENTED_HOME = "/opt/sops-as-code"

#: the roles of the page's processes table, in the order a team starts them
ROLES = ("Prefect server", "deployer", "executor", "timers", "nudger", "pager", "API")


class PageError(RuntimeError):
    """docs/team.md (or a file it names) no longer has the shape this recipe reads; the message says where."""


@dataclass(frozen=True)
class Documented:
    """One row of the page's processes table."""

    role: str
    argv: tuple[str, ...]
    at_once: str
    line: int  # where in docs/team.md, for messages


def documented_processes(page: Path = PAGE) -> dict[str, Documented]:
    """The processes table of "## The processes": role → its command (the first code span of the command
    column), split as a shell would. Every role of :data:`ROLES` must be there."""
    lines = page.read_text().splitlines()
    found: dict[str, Documented] = {}
    inside = False
    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            inside = line.strip() == "## The processes"
            continue
        if not inside or not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] == "process":
            continue
        command = re.search(r"`([^`]+)`", cells[1])
        if command is None:
            raise PageError(f"{page}:{number}: the command column of {cells[0]!r} has no `command`")
        found[cells[0]] = Documented(cells[0], tuple(shlex.split(command.group(1))), cells[2], number)
    missing = [role for role in ROLES if role not in found]
    if missing:
        raise PageError(f"{page}: the table of '## The processes' lacks {', '.join(missing)} (has {', '.join(found)})")
    return found


def documented_databases(page: Path = PAGE) -> list[list[str]]:
    """The ``createdb`` commands of the ``sh`` block of "## The databases" (comments dropped). ``createuser``
    is left out: the private cluster's superuser already is the page's ``sop``."""
    text = page.read_text()
    section = text.split("## The databases", 1)[-1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    if block is None:
        raise PageError(f"{page}: '## The databases' has no ```sh block")
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    created = [argv for argv in commands if argv and argv[0] == "createdb"]
    if not created:
        raise PageError(f"{page}: the ```sh block of '## The databases' has no createdb line")
    return created


def documented_environment(path: Path = ENV_FILE) -> dict[str, str]:
    """``NAME=value`` lines of the environment file every unit reads (comments and blanks skipped)."""
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise PageError(f"{path}:{number}: expected NAME=value, got {line!r}")
        env[name.strip()] = value.strip()
    return env


def unit_commands(folder: Path = UNITS) -> dict[str, list[str]]:
    """unit file name → the argv of its ``ExecStart=``."""
    found = {}
    for unit in sorted(folder.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                found[unit.name] = shlex.split(line.removeprefix("ExecStart="))
    return found


def units_disagreeing(processes: dict[str, Documented], folder: Path = UNITS) -> list[str]:
    """Each unit's ``ExecStart`` against the page's command for its process (the unit runs the script from
    ``/opt/sops-as-code/.venv/bin``; ``%i`` is the API's port): what differs, one line each."""
    units = unit_commands(folder)
    unit_of = {"Prefect server": "sop-prefect.service", "deployer": "sop-deploy.service",
               "executor": "sop-executor@.service", "timers": "sop-timers.service", "nudger": "sop-nudger.service",
               "pager": "sop-pager.service", "API": "sop-api@.service"}
    problems = []
    for role, unit in unit_of.items():
        page = list(processes[role].argv)
        if unit not in units:
            problems.append(f"{folder / unit}: missing (the page's {role})")
            continue
        argv = [part.replace("%i", "8000") for part in units[unit]]
        expected = [f"{DOCUMENTED_HOME}/.venv/bin/{page[0]}", *page[1:]]
        if argv != expected:
            problems.append(f"{folder / unit}: ExecStart {shlex.join(argv)!r}, the page says {shlex.join(expected)!r}")
    return problems
