"""``kind: command`` — run a program (argv, no shell), capture its output and exit code."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from flows.language.expressions import render
from flows.language.steps.base import ONCE, StepBase, StepContext, StepFailed, StepKind, Template, ready

MAX_OUTPUT = 20_000


class CommandStep(StepBase):
    """Run a program (argv, no shell unless you ask for one), capture its output."""

    kind: Literal["command"] = "command"
    command: list[str] = Field(min_length=1)
    expect_exit: int = Field(default=0, ge=0, le=255, description="a process exits with 0 to 255")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    drill: Literal["simulate", "live"] = Field(default="simulate", description="in a drill: simulate the command "
                                                                               "(default) or run it for real")
    drill_answer: dict[str, Any] | None = Field(default=None, description="a drill's simulated answer: exit_code, "
                                                                          "stdout")
    once: bool = Field(default=False, description=ONCE)

    def outputs(self) -> set[str]:
        return super().outputs() | {"exit_code", "stdout", "stderr"}


def execute(step: CommandStep, ctx: StepContext) -> dict[str, Any]:
    """Run the command; succeed when it exits with ``expect_exit``.

    Outputs: ``exit_code``, ``stdout``, ``stderr`` (each truncated to the last 20 kB).
    """
    argv = [render(arg, ctx.variables) for arg in step.command]
    env = {**os.environ, **{k: render(v, ctx.variables) for k, v in step.env.items()}}
    cwd = render(step.cwd, ctx.variables) if step.cwd else None
    timeout = ctx.timeout(step.timeout) if step.timeout else None  # on the run's clock, like its other durations
    if not _findable(argv[0], cwd, env):
        raise StepFailed(f"command not found: {argv[0]}")
    try:
        done = subprocess.run(_dies_with_us(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
                              check=False)
    except FileNotFoundError:
        raise StepFailed(f"command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"command {argv[0]} did not finish within {ctx.timeout_text(step.timeout)}",  # type: ignore[arg-type]
                         {"stdout": _tail(exc.stdout), "stderr": _tail(exc.stderr)}) from None
    outputs = {"exit_code": done.returncode, "stdout": _tail(done.stdout), "stderr": _tail(done.stderr)}
    if done.returncode != step.expect_exit:
        last = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or [""]
        raise StepFailed(f"command {argv[0]} exited {done.returncode} (expected {step.expect_exit}): {last[0]}", outputs)
    return outputs


@functools.cache
def _setpriv() -> str | None:
    """util-linux's setpriv (Debian's base system), found on the PATH when first needed (not when imported): the
    program gets SIGKILL when the process that started it dies."""
    return shutil.which("setpriv")


def _dies_with_us(argv: list[str]) -> list[str]:
    """``argv`` started so that it is killed if this process dies (a kill -9 of ``sop executor``): the step is
    then run again by the rescue (:mod:`flows.prefect.rescue`) and its first attempt must not finish beside it.
    Without setpriv (not Linux) the program outlives a killed executor."""
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def _findable(program: str, cwd: str | None, env: dict[str, str]) -> bool:
    """The program exists where it will be run from (its PATH, or relative to ``cwd``)."""
    if os.sep in program:
        return os.path.exists(os.path.join(cwd or os.getcwd(), program))
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-MAX_OUTPUT:]


def templates(step: CommandStep) -> Iterator[Template]:
    """Each argument and each environment value."""
    for j, arg in enumerate(step.command):
        yield Template(arg, ("command", j))
    for key, value in step.env.items():
        yield Template(value, ("env", key))


def summary(step: CommandStep) -> str:
    """``command ./restart.sh web``."""
    return "command " + " ".join(step.command)


def simulate(step: CommandStep, ctx: StepContext) -> dict[str, Any]:
    """A drill's answer instead of running the program: the argv that would have run, and ``drill_answer``
    (default: the expected exit code, no output)."""
    answer = step.drill_answer or {}
    return {"simulated": True, "exit_code": answer.get("exit_code", step.expect_exit),
            "stdout": answer.get("stdout", ""), "stderr": answer.get("stderr", ""),
            "argv": [render(arg, ctx.variables) for arg in step.command]}


KIND = StepKind(model=CommandStep, activate=ready, summary=summary, templates=templates, execute=execute,
                simulate=simulate, fails="its command may fail")
