"""The ``sop`` fixture's warm commands (tests/forked_cli.py) answer as cold ones do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SOP_COMMAND
from tests.forked_cli import PRELOADED, WarmCommand

#: imports every module of the project with ``os.environ`` replaced by one that notes who reads it, and prints the
#: project's modules that read it at their top level (``<module>``)
_READERS = r'''
import importlib, os, pkgutil, sys
seen = set()
class Noted(type(os.environ)):
    def __getitem__(self, key):
        frame = sys._getframe(1)
        while frame and frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py", " os>", " _collections_abc>")):
            frame = frame.f_back
        if frame and frame.f_code.co_name == "<module>" and "/site-packages/" not in frame.f_code.co_filename and \
                any(part in frame.f_code.co_filename for part in ("/flows/", "/notifications/")):
            seen.add(f"{frame.f_code.co_filename}:{frame.f_lineno} reads {key}")
        return super().__getitem__(key)
os.environ.__class__ = Noted
import flows, notifications
for package in (flows, notifications):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
print("\n".join(sorted(seen)))
'''


def test_no_module_of_the_project_reads_the_environment_when_imported(repo_root: Path) -> None:
    # the warm process imports them before a command's environment is set: a value read then would be the warm
    # process's, not the command's
    found = subprocess.run([sys.executable, "-c", _READERS], cwd=repo_root, capture_output=True, text=True,
                           timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == ""


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
    assert (forked.returncode, forked.stdout, forked.stderr) == (cold.returncode, cold.stdout, cold.stderr)
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
