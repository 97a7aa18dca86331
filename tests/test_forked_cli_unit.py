"""The ``sop`` fixture's warm commands (tests/forked_cli.py) answer as cold ones do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SOP_COMMAND
from tests.forked_cli import PRELOADED, WarmCommand

#: imports the libraries the warm process imports, then watches ``os.environ`` while importing its project modules, and
#: prints each read not made (at any depth) on behalf of a module of the CLI, which each command imports afresh
_READERS = r'''
import os, sys
from tests.forked_cli import PRELOADED
for name in PRELOADED:
    if not name.startswith(("flows", "notifications")):
        __import__(name)
seen = set()
LIBRARIES = {"PYDANTIC_DISABLE_PLUGINS"}  # a library's own switch, read as each model is built; no test sets it
class Noted(type(os.environ)):
    def __getitem__(self, key):
        frames, frame = [], sys._getframe(1)
        while frame:
            frames.append(frame.f_code.co_filename)
            frame = frame.f_back
        ours = [f for f in frames if "/site-packages/" not in f and ("/flows/" in f or "/notifications/" in f)]
        if ours and "/flows/cli/" not in ours[0] and key not in LIBRARIES:  # the innermost of ours: a CLI module is imported afresh
            seen.add(f"{ours[0]} reads {key}")
        return super().__getitem__(key)
os.environ.__class__ = Noted
for name in PRELOADED:
    if name.startswith(("flows", "notifications")):
        __import__(name)
print("\n".join(sorted(seen)))
'''


def test_no_module_below_the_cli_reads_the_environment_when_imported(repo_root: Path) -> None:
    # the warm process imports them before a command's environment is set: a value read then would be the warm
    # process's, not the command's (the CLI's modules, and the consoles they make, are imported by each command)
    found = subprocess.run([sys.executable, "-c", _READERS], cwd=repo_root, capture_output=True, text=True,
                           timeout=120, env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == ""


def test_a_warm_command_sizes_and_colours_its_output_for_its_own_terminal(repo_root: Path) -> None:
    # the consoles are made when the CLI is imported: by each command, with its COLUMNS and NO_COLOR
    command = WarmCommand(SOP_COMMAND[0], {**os.environ, "SOP_HOME": str(repo_root), "NO_COLOR": "1",
                                           "COLUMNS": "400"})
    try:
        narrow = command.run(["list"], {**os.environ, "SOP_HOME": str(repo_root), "COLUMNS": "80", "NO_COLOR": "1"},
                             repo_root, 60)
        coloured = command.run(["list"], {**os.environ, "SOP_HOME": str(repo_root), "COLUMNS": "80",
                                          "FORCE_COLOR": "1", "TERM": "xterm-256color"}, repo_root, 60)
    finally:
        command.stop()
    assert narrow.returncode == 0 and max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    assert "\x1b[" in coloured.stdout and "\x1b[" not in narrow.stdout


@pytest.fixture(scope="module")
def warm(repo_root: Path):
    command = WarmCommand(SOP_COMMAND[0], {**os.environ, "SOP_HOME": str(repo_root)})
    yield command
    command.stop()


def test_a_warm_command_gets_its_own_environment_folder_streams_and_exit_code(warm: WarmCommand, repo_root: Path,
                                                                             tmp_path: Path) -> None:
    if len(SOP_COMMAND) != 1:
        pytest.skip("the console script is not installed")  # (the fixture runs cold then too)
    env = {**os.environ, "SOP_HOME": str(tmp_path), "NO_COLOR": "1"}
    (tmp_path / "sops").mkdir()
    (tmp_path / "sops" / "broken.yaml").write_text("id: broken\ntitle: [\n")
    cold = subprocess.run([*SOP_COMMAND, "validate"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    forked = warm.run(["validate"], env, tmp_path, 60)
    def same(text: str) -> str:  # what sop validate says it took ("in 0.01s") differs run to run
        return re.sub(r"\(\d+\.\d+s\)|in \d+\.\d+s", "(…s)", text)

    assert (forked.returncode, same(forked.stdout), same(forked.stderr)) == \
        (cold.returncode, same(cold.stdout), same(cold.stderr))
    assert forked.returncode != 0 and "broken.yaml" in forked.stderr
    fine = warm.run(["--version"], env, repo_root, 60)
    assert fine.returncode == 0 and fine.stdout.startswith("sop ")


def test_a_warm_command_that_runs_too_long_is_killed_and_said_so(warm: WarmCommand, repo_root: Path) -> None:
    started = __import__("time").monotonic()
    with pytest.raises(subprocess.TimeoutExpired):  # validating the library takes far more than 50 ms
        warm.run(["validate"], {**os.environ, "SOP_HOME": str(repo_root)}, repo_root, 0.05)
    assert __import__("time").monotonic() - started < 5


def test_the_preloaded_modules_are_not_prefect_or_apprise() -> None:
    # both read their settings (PREFECT_*, plugin paths) when imported
    assert not [name for name in PRELOADED if name.split(".")[0] in ("prefect", "apprise")]
