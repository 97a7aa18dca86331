"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows.ledger import Ledger
from tests.postgres import PostgresCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the installed console script next to this interpreter, as a user runs it
_SCRIPT = Path(sys.executable).with_name("sop")
SOP_COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "flows"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout: the folder holding ``sops/``, ``config/`` and ``flows/``."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def sop(repo_root: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``sop`` command as a user would, with ``SOP_HOME`` set to the checkout.

    ``sop("validate", "sops")`` runs in the checkout; ``env={"NAME": None}`` removes a
    variable, ``env={"NAME": "value"}`` sets one.
    """

    def run(
        *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "SOP_HOME": str(repo_root), "NO_COLOR": "1", "COLUMNS": "400"}
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        return subprocess.run(
            [*SOP_COMMAND, *args],
            cwd=cwd or repo_root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh, migrated SQLite ledger in the test's own folder."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """This session's private PostgreSQL cluster (tests/postgres.py), started on first use, stopped at the end."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
