"""Fixtures shared by every test folder.

The ledger's database comes from one place, the ``database`` fixture: the tests of
:data:`BOTH_DATABASES` run once per database ``SOP_TEST_DATABASE`` names (``sqlite``,
``postgresql`` or ``both``; default ``both`` when PostgreSQL's server binaries are installed,
required under ``CI``), the others on SQLite. PostgreSQL is this session's own cluster
(tests/postgres.py). A test asks ``database.url_at(path)`` for a ledger URL (the file on
SQLite, a fresh migrated database on PostgreSQL), or takes ``database_url`` / ``ledger``.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.ledger import Ledger
from tests.forked_cli import WarmCommand
from tests.postgres import PostgresCluster, PostgresUnavailable, server_binaries

REPO_ROOT = Path(__file__).resolve().parent.parent

# Ctrl-C reaches the services the tests start and stop with SIGINT, however this session was started: a shell's
# background job (`make test &`, `nohup`) ignores SIGINT, and an ignored signal stays ignored in every child, whose
# `sop serve` or `sop timers` would then never stop
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
#: the installed console script next to this interpreter, as a user runs it
_SCRIPT = Path(sys.executable).with_name("sop")
SOP_COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "flows"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout: the folder holding ``sops/``, ``config/`` and ``flows/``."""
    return REPO_ROOT


def _command_env(repo_root: Path) -> dict[str, str]:
    """The environment every ``sop`` command of the fixture starts from: the tests' own, in the checkout, no colour,
    wide lines."""
    return {**os.environ, "SOP_HOME": str(repo_root), "NO_COLOR": "1", "COLUMNS": "400"}


@pytest.fixture(scope="session")
def sop(repo_root: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``sop`` command as a user would, with ``SOP_HOME`` set to the checkout.

    ``sop("validate", "sops")`` runs in the checkout; ``env={"NAME": None}`` removes a
    variable, ``env={"NAME": "value"}`` sets one.
    """

    def run(
        *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        environment = _command_env(repo_root)
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        if _WARM is not None:
            return _WARM.run(list(args), environment, cwd or repo_root, timeout)
        return subprocess.run(
            [*SOP_COMMAND, *args],
            cwd=cwd or repo_root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


#: the ``sop`` fixture's commands are forked from a process with the libraries imported (tests/forked_cli.py), unless
#: ``SOP_TEST_COLD_CLI=1`` (each then starts cold, as from a shell)
_WARM = None if os.environ.get("SOP_TEST_COLD_CLI") == "1" or not _SCRIPT.exists() else \
    WarmCommand(str(_SCRIPT), _command_env(REPO_ROOT))


#: the test folders that run on every selected database (the others run on SQLite only)
BOTH_DATABASES = ("ledger", "engine", "triggers", "api", "audit")
KINDS = ("sqlite", "postgresql")
#: fixtures whose tests run once, on PostgreSQL, when both databases are selected: the engine's stack
#: (a Prefect server, deployments, a worker: the slowest part of the suite) is Prefect's story, the same on
#: both ledgers; what the ledger's database changes is tested on both by the engine's own tests (no Prefect).
#: With SOP_TEST_DATABASE=sqlite (no PostgreSQL installed) they run on SQLite.
ONCE_ON_POSTGRESQL = ("stack", "stack_of_its_own")


def selected_databases() -> tuple[str, ...]:
    """The databases of ``SOP_TEST_DATABASE`` (sqlite | postgresql | both)."""
    choice = os.environ.get("SOP_TEST_DATABASE", "").strip().lower()
    if not choice:
        try:
            server_binaries()
            choice = "both"
        except PostgresUnavailable:
            if os.environ.get("CI"):
                raise
            choice = "sqlite"
    if choice == "both":
        return KINDS
    if choice not in KINDS:
        raise pytest.UsageError(f"SOP_TEST_DATABASE={choice!r}: expected sqlite, postgresql or both")
    return (choice,)


def pytest_report_header() -> str:
    return f"ledger databases: {', '.join(selected_databases())} (SOP_TEST_DATABASE; folders {', '.join(BOTH_DATABASES)})"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): pokes SQLite's internals (the file, its locks); "
                                       "runs on SQLite only, its PostgreSQL twin is named in the reason")
    config.addinivalue_line("markers", "postgresql_only(reason): a PostgreSQL twin of a sqlite_only test")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM (a CI time limit, ``timeout``) ends the session as Ctrl-C does, so its fixtures are torn down: the
    PostgreSQL clusters it started (``pg_ctl``: they outlive the process that started them) are stopped."""
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``database`` once per database its folder runs on."""
    if "database" not in metafunc.fixturenames:
        return
    folder = Path(metafunc.definition.path).relative_to(REPO_ROOT / "tests").parts[0]
    kinds = selected_databases() if folder in BOTH_DATABASES else ("sqlite",)
    if len(kinds) > 1 and any(name in metafunc.fixturenames for name in ONCE_ON_POSTGRESQL):
        kinds = ("postgresql",)
    if metafunc.definition.get_closest_marker("sqlite_only"):
        kinds = ("sqlite",)
    elif metafunc.definition.get_closest_marker("postgresql_only"):
        kinds = tuple(k for k in kinds if k == "postgresql")  # none selected: an empty set, reported as such
    metafunc.parametrize("database", kinds, indirect=True, scope="session")


@dataclass
class TestDatabase:
    """One database kind of this session: ``url_at(path)`` is the ledger URL for that place."""

    kind: str
    cluster: PostgresCluster | None = None
    template: str | None = None
    _urls: dict[Path, str] = field(default_factory=dict)
    _names: Iterator[int] = field(default_factory=itertools.count)

    __test__ = False  # not a test class

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    def url_at(self, path: Path) -> str:
        """The ledger at ``path``: that SQLite file, or on PostgreSQL a fresh migrated database
        (the same one each time this path is asked for)."""
        if self.cluster is None:
            return f"sqlite:///{path}"
        if path not in self._urls:
            self._urls[path] = self.cluster.database(f"ledger_{next(self._names)}", template=self.template)
        return self._urls[path]

    def copy(self, url: str, path: Path) -> str:
        """A copy of the ledger at ``url``, at ``path`` (the file and its WAL; or a database made from it)."""
        if self.cluster is None:
            import shutil

            source = url.split("///", 1)[1]
            shutil.copy(source, path)
            for suffix in ("-wal", "-shm"):
                if Path(f"{source}{suffix}").exists():
                    shutil.copy(f"{source}{suffix}", f"{path}{suffix}")
            return f"sqlite:///{path}"
        self._urls[path] = self.cluster.database(f"ledger_{next(self._names)}", template=url.rsplit("/", 1)[1])
        return self._urls[path]


def sql_on(url: str, *statements: tuple[str, Any]) -> list[list[dict[str, object]]]:
    """Run statements (``?`` placeholders) on the ledger at ``url`` behind the engine's back, in one
    transaction, as someone with the file and ``sqlite3``, or with ``psql`` access, would; their rows."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        conn.row_factory = sqlite3.Row
        with conn:
            out = [[dict(row) for row in conn.execute(sql, params).fetchall()] for sql, params in statements]
        conn.close()
        return out
    import psycopg
    from psycopg.rows import dict_row

    out = []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), row_factory=dict_row) as conn:
        for sql, params in statements:
            named = isinstance(params, dict)  # :name placeholders, as sqlite3 takes them
            cursor = conn.execute(re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql) if named else sql.replace("?", "%s"), params)
            out.append(cursor.fetchall() if cursor.description else [])
    return out


#: this session's databases by kind, each made once. pytest makes a parametrised session fixture again whenever the
#: kind changes from one test to the next, which `make test`'s workers (one file at a time: its SQLite tests, then its
#: PostgreSQL ones) do twice per file: the migrated template again each time, and the session fixtures built on it
_DATABASES: dict[str, TestDatabase] = {}


@pytest.fixture(scope="session")
def database(request: pytest.FixtureRequest) -> TestDatabase:
    """This session's database of the kind the test runs on (parametrised by ``pytest_generate_tests``)."""
    kind = getattr(request, "param", "sqlite")
    if kind not in _DATABASES:
        _DATABASES[kind] = _new_database(kind, request)
    return _DATABASES[kind]


def _new_database(kind: str, request: pytest.FixtureRequest) -> TestDatabase:
    if kind == "sqlite":
        return TestDatabase("sqlite")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    template = "ledger_template"
    template_ledger = Ledger(cluster.database(template))
    template_ledger.migrate()
    template_ledger.dispose()
    return TestDatabase("postgresql", cluster, template)


@pytest.fixture
def database_url(database: TestDatabase, tmp_path: Path) -> str:
    """A fresh ledger URL for this test (empty; migrated on PostgreSQL)."""
    return database.url_at(tmp_path / "ledger.db")


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A fresh, migrated ledger of this test (SQLite file in the test's folder, or a PostgreSQL database)."""
    ledger = Ledger(database_url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """This session's private PostgreSQL cluster (tests/postgres.py), started on first use, stopped at the end
    (thrown away: nothing written out first, its folder removed behind the session's back)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop(mode="immediate", remove_behind=True)
