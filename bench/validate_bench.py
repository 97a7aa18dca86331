"""How long `sop validate` takes on a library of 200 SOPs (goal: under 1 s), and on one SOP of 10,000 steps.

Copies the SOPs of ``sops/`` under new ids into a temporary project (with the repo's
``config/``) and times :func:`flows.language.library.validate_paths` over it (best of 5), then the
real command end to end, start-up included (best of 3). Then one generated SOP of 10,000 steps
(a chain, each step's ``when`` reading the step before, templates parsed afresh each time): validation
is linear in the number of steps (goal: under 2 s; it was quadratic, 12.5 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flows.language.expressions import analyse
from flows.language.library import validate_paths

ROOT = Path(__file__).resolve().parent.parent
FILES = 200
GOAL_SECONDS = 1.0
BIG_STEPS = 10_000
BIG_GOAL_SECONDS = 2.0


def big_sop(target: Path, steps: int = BIG_STEPS) -> Path:
    """One SOP of ``steps`` human steps in a chain, each with a due and a ``when`` reading the step before."""
    lines = [f"id: chain-{steps}", "title: A very long chain", "class: routine", "owner: sre-oncall", "steps:"]
    for i in range(steps):
        lines += [f"  - id: s{i}", "    assignee: sre-oncall", "    due: 1h"]
        if i:
            lines += [f"    needs: [s{i - 1}]", f"    when: \"{{{{ steps.s{i - 1}.outcome != 'rejected' }}}}\""]
    path = target / f"chain-{steps}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_project(target: Path, files: int = FILES) -> Path:
    """A project folder with ``files`` SOPs (copies of the library under new ids) and config/."""
    shutil.copytree(ROOT / "config", target / "config")
    (target / "sops").mkdir()
    originals = sorted((ROOT / "sops").glob("*.yaml"))
    if not originals:
        raise SystemExit("no SOPs in sops/ to copy")
    stems = [o.stem for o in originals]
    for n in range(files):
        source = originals[n % len(originals)]
        new_id = f"{source.stem}-{n:03d}"
        text, count = re.subn(
            rf"^id: {re.escape(source.stem)}\s*$",
            f"id: {new_id}",
            source.read_text(encoding="utf-8"),
            count=1,
            flags=re.M,
        )
        if count != 1:
            raise SystemExit(f"{source}: no `id: {source.stem}` line to rename")
        # a follow-up starts the copy of its SOP made in the same round (or the first round's)
        def renamed(match: re.Match[str], n: int = n) -> str:
            index = n // len(stems) * len(stems) + stems.index(match[2])
            return f"{match[1]}{match[2]}-{index if index < files else stems.index(match[2]):03d}"

        text = re.sub(rf"^(\s*-?\s*start: )({'|'.join(map(re.escape, stems))})\s*$", renamed, text, flags=re.M)
        (target / "sops" / f"{new_id}.yaml").write_text(text, encoding="utf-8")
    return target


def best_of(runs: int, action: Callable[[], object]) -> float:
    """The fastest of ``runs`` timings of ``action``, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def best_cpu_of(runs: int, action: Callable[[], object]) -> float:
    """The least CPU time (this process) of ``runs`` runs of ``action``, in seconds."""
    times = []
    for _ in range(runs):
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    """Build the 200-file project, time the validator and the CLI, print a table."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sop-bench-") as tmp:
        project = make_project(Path(tmp))
        targets = [project / "sops", project / "config"]

        def validate() -> None:
            errors, sops, _ = validate_paths(targets, project / "config", env={})
            if errors or sops != FILES:
                raise SystemExit(f"the bench library does not validate ({sops} SOPs): {errors[:3]}")

        in_process = best_of(5, validate)
        script = Path(sys.executable).with_name("sop")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "flows"]
        env = {**os.environ, "SOP_HOME": str(project)}

        def cli() -> None:
            subprocess.run([*command, "validate", "--quiet"], env=env, cwd=project, check=True, capture_output=True)

        end_to_end = best_of(3, cli)

        big = big_sop(Path(tmp))

        def validate_big() -> None:
            analyse.cache_clear()  # each run parses every template, as a first `sop validate` does
            errors, sops, _ = validate_paths([big], project / "config", env={})
            if errors or sops != 1:
                raise SystemExit(f"the {BIG_STEPS}-step SOP does not validate: {errors[:3]}")

        big_seconds = best_of(3, validate_big)
        big_cpu = best_cpu_of(3, validate_big)  # on a shared machine, the CPU time is the figure to compare
        hostile = hostile_files(Path(tmp), project / "config")

    table = Table(title=f"sop validate, {FILES} SOP files (goal < {GOAL_SECONDS:g} s)", title_justify="left")
    for column in ("what", "files", "seconds", "ms/file"):
        table.add_column(column, justify="left" if column == "what" else "right")
    rows = {"validate_paths (best of 5)": in_process, "`sop validate` end to end (best of 3)": end_to_end}
    for what, seconds in rows.items():
        table.add_row(what, str(FILES), f"{seconds:.3f}", f"{seconds / FILES * 1000:.2f}")
    table.add_row(f"validate_paths, one SOP of {BIG_STEPS:,} steps (best of 3)", "1", f"{big_seconds:.3f}",
                  f"{big_seconds * 1000:.2f}")
    console.print(table)
    big_verdict = "[green]within the goal[/]" if big_cpu < BIG_GOAL_SECONDS else "[red]over the goal[/]"
    console.print(f"one SOP of {BIG_STEPS:,} steps: {big_seconds:.3f} s wall, {big_cpu:.3f} s CPU "
                  f"(goal < {BIG_GOAL_SECONDS:g} s), {big_verdict}")
    verdict = "[green]within the goal[/]" if in_process < GOAL_SECONDS else "[red]over the goal[/]"
    console.print(f"validate_paths: {in_process:.3f} s for {FILES} files, {verdict}")
    slow = {name: cpu for name, cpu in hostile.items() if cpu >= BIG_GOAL_SECONDS}
    worst = max(hostile, key=hostile.__getitem__)
    console.print(f"hostile generated files (tests/language/test_hostile_files.py), CPU best of 3: {len(hostile)} files, "
                  f"slowest {worst} {hostile[worst]:.3f} s (goal < {BIG_GOAL_SECONDS:g} s each), "
                  + (f"[red]over the goal: {slow}[/]" if slow else "[green]all within the goal[/]"))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "validate.json").write_text(
        json.dumps(
            {
                "files": FILES,
                "validate_paths_s": round(in_process, 4),
                "cli_s": round(end_to_end, 4),
                "goal_s": GOAL_SECONDS,
                "big_sop_steps": BIG_STEPS,
                "big_sop_s": round(big_seconds, 4),
                "big_sop_cpu_s": round(big_cpu, 4),
                "big_sop_goal_s": BIG_GOAL_SECONDS,
                "hostile_cpu_s": {name: round(cpu, 4) for name, cpu in hostile.items()},
            },
            indent=2,
        )
        + "\n"
    )


def hostile_files(tmp: Path, config: Path) -> dict[str, float]:
    """Each generated hostile file of the tests (huge, deep, circular…): the CPU seconds to find its located
    error, or to find it valid (best of 3). The goal is BIG_GOAL_SECONDS each; the tests only guard against a
    hang (a timed unit test flakes on a shared machine)."""
    from tests.language.test_hostile_files import GENERATED, GENERATED_VALID

    folder = tmp / "hostile"
    folder.mkdir()
    files = {name: content for name, (content, _) in GENERATED.items()} | GENERATED_VALID
    cpu: dict[str, float] = {}
    for name, content in sorted(files.items()):
        (folder / name).write_bytes(content)
        cpu[name] = best_cpu_of(3, lambda path=folder / name: validate_paths([path], config, env={}))
    return cpu


if __name__ == "__main__":
    main()
