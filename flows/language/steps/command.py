"""``kind: command`` — run a program (argv, no shell), capture its output and exit code."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from flows.language.expressions import render
from flows.language.spec import CommandStep
from flows.language.steps.base import StepContext, StepFailed

MAX_OUTPUT = 20_000


def execute(step: CommandStep, ctx: StepContext) -> dict[str, Any]:
    """Run the command; succeed when it exits with ``expect_exit``.

    Outputs: ``exit_code``, ``stdout``, ``stderr`` (each truncated to the last 20 kB).
    """
    argv = [render(arg, ctx.variables) for arg in step.command]
    env = {**os.environ, **{k: render(v, ctx.variables) for k, v in step.env.items()}}
    cwd = render(step.cwd, ctx.variables) if step.cwd else None
    timeout = step.timeout.total_seconds() if step.timeout else None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False)
    except FileNotFoundError:
        raise StepFailed(f"command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"command {argv[0]} did not finish within {timeout:g}s",
                         {"stdout": _tail(exc.stdout), "stderr": _tail(exc.stderr)}) from None
    outputs = {"exit_code": done.returncode, "stdout": _tail(done.stdout), "stderr": _tail(done.stderr)}
    if done.returncode != step.expect_exit:
        last = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or [""]
        raise StepFailed(f"command {argv[0]} exited {done.returncode} (expected {step.expect_exit}): {last[0]}", outputs)
    return outputs


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-MAX_OUTPUT:]
