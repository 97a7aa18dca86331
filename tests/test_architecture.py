"""The layers of docs/architecture.md hold: the import contract in pyproject.toml ([tool.importlinter]).

``lint-imports`` (import-linter) reads every import of ``flows`` and ``notifications``,
function-level ones too, and checks the layers, the forbidden imports and that no
package's modules import each other in a circle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


def copy_of_the_tree(tmp_path: Path) -> Path:
    for name in ("flows", "notifications"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_import(module: Path, line: str) -> None:
    text = module.read_text()
    head, _, rest = text.partition("from __future__ import annotations\n")
    module.write_text(f"{head}from __future__ import annotations\n{line}\n{rest}" if rest else f"{line}\n{text}")


def test_the_tree_keeps_every_contract() -> None:
    done = lint(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout
    assert done.stdout.count("KEPT") == 7


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("flows/language/durations.py", "import sqlalchemy", "The language imports no runtime package"),
    ("flows/language/spec.py", "from flows.engine import view", "Layers"),
    ("flows/engine/timers.py", "from flows.prefect import launcher", "The engine knows no Prefect"),
    ("notifications/masking.py", "from flows.engine import board", "Notifications know no engine"),
    ("flows/ledger/schema.py", "from flows.language import durations", "The ledger knows nothing above it"),
    ("flows/audit/summary.py", "from flows.engine import view", "The audit reads the records"),
    # a circle inside one layer: the outbox and the pager already import each other one way
    ("flows/engine/outbox.py", "from flows.engine import paging", "No import circles"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    root = copy_of_the_tree(tmp_path)
    add_import(root / module, line)
    done = lint(root)
    assert done.returncode != 0
    assert any(broken in row and row.rstrip().endswith("BROKEN") for row in done.stdout.splitlines()), done.stdout
