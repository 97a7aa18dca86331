"""Isolation and supervision: a command step's program lives and dies with the process that runs it
(``sop executor``), and ``sop serve`` restarts a dead child soon.

When an executor is killed (-9) mid-step, the rescue runs the step again in another executor; the first
attempt's program must not go on beside it (a restart script run twice at once). Without Prefect.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.language.steps import StepContext, StepFailed
from flows.language.steps.command import CommandStep, _setpriv, execute

RUNNER = """
import sys
from flows.language.steps import StepContext
from flows.language.steps.command import CommandStep, execute
step = CommandStep(id="restart", command=["sh", "-c", "echo $$ > {pid}; sleep 60; echo finished > {marker}"])
execute(step, StepContext(variables={{}}, run_id="r1", pager=None))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_executor_leaves_no_command_running(tmp_path: Path) -> None:
    assert _setpriv() is not None, "util-linux setpriv (Debian's base system) binds a command to its executor"
    pid_file, marker = tmp_path / "pid", tmp_path / "finished"
    code = RUNNER.format(pid=pid_file, marker=marker)
    runner = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        program = int(pid_file.read_text())
        assert _alive(program)
        runner.send_signal(signal.SIGKILL)  # the executor dies mid-step
        runner.wait(10)
        deadline = time.monotonic() + 5
        while _alive(program) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(program), "the step's program outlived the executor that ran it"
    finally:
        runner.kill()
        if pid_file.exists() and pid_file.read_text().strip():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_missing_program_is_said_so(tmp_path: Path) -> None:
    ctx = StepContext(variables={}, run_id="r1", pager=None)
    for argv in (["no-such-program-here"], ["./missing.sh"]):
        with pytest.raises(StepFailed, match=f"command not found: {argv[0]}"):
            execute(CommandStep(id="x", command=argv, cwd=str(tmp_path)), ctx)
    script = tmp_path / "here.sh"
    script.write_text("#!/bin/sh\necho ran in $PWD\n")
    script.chmod(0o755)
    done = execute(CommandStep(id="x", command=["./here.sh"], cwd=str(tmp_path)), ctx)
    assert done["exit_code"] == 0 and done["stdout"].strip() == f"ran in {tmp_path}"


def test_a_child_restarted_after_a_long_life_waits_one_second_not_the_crash_loop_backoff(tmp_path: Path) -> None:
    from flows.runtime.serve import STEADY, Child

    child = Child(name="executor-1", argv=["true"], env=dict(os.environ), cwd=tmp_path, log=tmp_path / "x.log",
                  restart=True)
    child.start()
    waits = []
    for _ in range(6):  # a crash loop: each dies at once
        child.process.wait()
        waits.append(child.backoff())
        child.due = time.monotonic()
        child.start()
    assert waits == [1, 2, 4, 8, 16, 30]
    child.process.wait()
    child.started_at -= STEADY  # it had run for a minute when it died (as if days after the loop)
    assert child.backoff() == 1
