"""The documented benchmark commands run (``python -m bench NAME``, docs/benchmarks.md), at a tiny size.

A benchmark is how a speed target is kept; one that fails to run keeps none. Two failed for a session
unnoticed (a tuple the digests widened; a page that began naming people): each cheap one runs here, in a
process of its own as the docs say, and must end well and print its table. The slow ones (the engine on a
real Prefect stack, the team and executor benches, the audit over 10,000 runs) are left to their runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: name → the environment that makes it small, and a line of its table
CHEAP = {
    "newrun": ({"BENCH_NEWRUN_N": "20"}, "pager: CPU per page delivered"),
    "board": ({"BENCH_BOARD_N": "2", "BENCH_BOARD_RUNS": "10"}, "live update"),
    "notify": ({"BENCH_NOTIFY_N": "20"}, "Dispatcher.submit"),
    "web": ({"BENCH_WEB_N": "3"}, "step page"),
    "calendar": ({}, "calendar:"),
}


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_a_documented_benchmark_runs_and_prints_its_table(name: str) -> None:
    env, line = CHEAP[name]
    done = subprocess.run([sys.executable, "-m", "bench", name], cwd=ROOT, capture_output=True, text=True,
                          timeout=240, env={**os.environ, **env, "COLUMNS": "200"})
    assert done.returncode == 0, f"python -m bench {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert line in done.stdout, done.stdout[-3000:]
