"""The real stack for engine tests: a Prefect server on SQLite, workers, timers — started once.

The session works in a temporary copy of the project (the repo's sops/ and config/ plus
the probe SOPs of tests/engine/sops/), so its ledger, inbox and Prefect database never
touch the checkout. Time is compressed per run (``speed``); nothing sleeps for real hours.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.ledger import Ledger
from tests.conftest import TestDatabase
from tests.support import free_port

HERE = Path(__file__).resolve().parent




def make_project(repo_root: Path, target: Path, only: tuple[str, ...] | None = None) -> Path:
    """A project folder: the repo's library and config plus the probe SOPs (``only``: just these probes).

    A test that starts its own `sop serve` deploys every SOP of its project to Prefect; with
    ``only`` it deploys the few it needs instead of 27 (seconds each on a busy SQLite server).
    """
    shutil.copytree(repo_root / "config", target / "config")
    # the probes' http steps take their base address from config, as every http step must (sop validate); their
    # notify steps reach it as a webhook channel (t-hook)
    host = shared_gateway().url.removeprefix("http://")
    (target / "config" / "t-gateway.yaml").write_text(f'vars:\n  t_gateway: "{shared_gateway().url}"\n'
                                                       f'channels:\n  t-hook:\n    urls: ["json://{host}/hook"]\n')
    if only is None:
        shutil.copytree(repo_root / "sops", target / "sops")
    else:
        (target / "sops").mkdir(parents=True)
    for probe in (HERE / "sops").glob("*.yaml"):
        if only is None or probe.stem in only:
            shutil.copy(probe, target / "sops" / probe.name)
    return target


def local_engine_of(repo_root: Path, root: Path, monkeypatch: pytest.MonkeyPatch, sops: dict[str, str]) -> Iterator[Any]:
    """An engine without Prefect on a project of the repo's config and only ``sops`` (file stem → its text), its own
    SQLite ledger and inbox; its pager closed after (yields from a fixture)."""
    from flows import runtime

    make_project(repo_root, root, only=())
    for stem, text in sops.items():
        (root / "sops" / f"{stem}.yaml").write_text(text)
    monkeypatch.setenv("SOP_DATABASE_URL", f"sqlite:///{root / 'var' / 'ledger.db'}")
    monkeypatch.setenv("SOP_INBOX_DIR", str(root / "var" / "inbox"))
    engine = runtime.engine(root, prefect=False)
    yield engine
    engine.pager.close()


def clocked_engine_of(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, clock: Any,
                      sops: dict[str, str]) -> Iterator[Any]:
    """An engine without Prefect on a project of the repo's config and only ``sops`` (file stem → its text, dedented),
    its ledger at ``url``, time on ``clock`` (a ManualClock), its pager's inbox ``engine.inbox``; closed after
    (yields from a fixture)."""
    import textwrap

    from flows.engine.paging import Pager
    from flows.engine.transitions import Engine
    from flows.language.library import load_library

    root = make_project(repo_root, tmp_path / "site", only=())
    for stem, text in sops.items():
        (root / "sops" / f"{stem}.yaml").write_text(textwrap.dedent(text))
    monkeypatch.setenv("SOP_INBOX_DIR", str(tmp_path / "inbox"))
    library = load_library(root)
    ledger = Ledger(url, clock=clock)
    ledger.migrate()
    engine = Engine(library, ledger, pager=Pager(library.site, ledger), clock=clock)
    engine.inbox = tmp_path / "inbox"  # type: ignore[attr-defined]
    yield engine
    engine.pager.close()
    ledger.dispose()


@pytest.fixture(scope="session")
def prefect_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Prefect database on SQLite, migrated to this Prefect's head (``prefect server database upgrade``),
    made once and kept in pytest's cache for the next sessions and the other workers (one at a time: a lock).

    An embedded Prefect server spent ~10 of its ~15 s first start migrating an empty database; a stack a test starts
    on a copy (:func:`with_prefect_database`) starts as on any later day. What a fresh clone's first start does is
    the README drill's test (tests/engine/test_readme_drill.py), which starts on nothing."""
    import fcntl
    import subprocess
    import sys

    import prefect

    cache = getattr(request.config, "cache", None)  # none with -p no:cacheprovider: this session's own
    folder = cache.mkdir(f"prefect-db-{prefect.__version__}") if cache is not None else \
        tmp_path_factory.getbasetemp().parent / f"prefect-db-{prefect.__version__}"
    folder.mkdir(exist_ok=True)
    database = folder / "prefect.db"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not database.exists():
            partial = folder / f"partial-{os.getpid()}.db"
            script = Path(sys.executable).with_name("prefect")
            done = subprocess.run([str(script), "server", "database", "upgrade", "-y"], capture_output=True, text=True,
                                  timeout=300, env={**os.environ, "PREFECT_HOME": str(folder / "home"),
                                                    "PREFECT_API_DATABASE_CONNECTION_URL":
                                                        f"sqlite+aiosqlite:///{partial}"})
            assert done.returncode == 0 and not Path(f"{partial}-wal").exists(), done.stdout + done.stderr
            partial.rename(database)
    return database


def with_prefect_database(root: Path, migrated: Path) -> Path:
    """``root``'s embedded Prefect server starts on a copy of ``migrated`` (:func:`prefect_database`): where `sop
    serve` keeps its database (var/prefect/prefect.db)."""
    target = root / "var" / "prefect" / "prefect.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated, target)
    return root


@pytest.fixture(scope="package")
def project(database: TestDatabase, repo_root: Path, tmp_path_factory: pytest.TempPathFactory,
            prefect_database: Path) -> Iterator[Path]:
    """This package's project root, set as SOP_HOME (own ledger and inbox) until its tests are done."""
    root = with_prefect_database(make_project(repo_root, tmp_path_factory.mktemp("project")), prefect_database)
    # PREFECT_API_AUTH_STRING: the stack hands its server's auth string to this process as to its children
    names = ("SOP_HOME", "SOP_DATABASE_URL", "SOP_INBOX_DIR", "SOP_PREFECT_POOL", "PREFECT_API_URL",
             "PREFECT_API_AUTH_STRING")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({"SOP_HOME": str(root), "SOP_DATABASE_URL": database.url_at(root / "var" / "ledger.db"),
                       "SOP_INBOX_DIR": str(root / "var" / "inbox"), "SOP_PREFECT_POOL": f"test-pool-{os.getpid()}"})
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="package")
def stack(project: Path) -> Iterator[Any]:
    """``sop serve``'s stack, really started: Prefect server (locked with its auth string, on a port that is
    not Prefect's default), deployments, one worker, timers."""
    from flows.runtime.serve import Stack

    stack = Stack(root=project, port=free_port(), workers=1, api_port=free_port())  # the API off port 8000
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def stack_of_its_own(database: TestDatabase, repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     prefect_database: Path) -> Iterator[Callable[..., Any]]:
    """``stack_of_its_own(sops, **options)``: a ``Stack`` started on a project of these probe SOPs, with a ledger, a
    pool and a Prefect server of its own; the test may stop it, else it is stopped after. Runs once, on PostgreSQL,
    as the package stack does (``ONCE_ON_POSTGRESQL``)."""
    from flows.runtime.serve import Stack

    started: list[Any] = []

    def start(sops: tuple[str, ...], **options: Any) -> Any:
        root = with_prefect_database(make_project(repo_root, tmp_path / f"site{len(started)}", only=sops),
                                     prefect_database)
        for name, value in {"SOP_HOME": str(root), "SOP_DATABASE_URL": database.url_at(root / "var" / "ledger.db"),
                            "SOP_INBOX_DIR": str(root / "var" / "inbox"),
                            "SOP_PREFECT_POOL": f"own-{os.getpid()}-{len(started)}"}.items():
            monkeypatch.setenv(name, value)
        for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):  # the stack sets them for this process: undone
            monkeypatch.setenv(name, "")  # after (a delenv of an unset name records nothing to undo)
            monkeypatch.delenv(name)
        stack = Stack(root=root, port=free_port(), **options)
        started.append(stack)
        stack.start()
        return stack

    yield start
    for stack in started:
        if stack.children:  # not stopped by the test
            stack.stop()
        if stack.engine is not None and stack.engine.pager is not None:
            stack.engine.pager.close()


@pytest.fixture(scope="package")
def engine(stack: Any) -> Any:
    return stack.engine


@pytest.fixture
def site(database: TestDatabase, repo_root: Path, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A site of its own on the test's database, with no stack: its engine, and the environment a ``sop`` command
    run against it needs (tests of the terminal's views: status, hold, cancel…)."""
    from flows.engine.transitions import Engine
    from flows.language.library import load_library

    root = make_project(repo_root, tmp_path / "site")
    url = database.url_at(root / "var" / "ledger.db")
    ledger = Ledger(url)
    ledger.migrate()
    engine = Engine(load_library(root), ledger)
    yield engine, {"SOP_HOME": str(root), "SOP_DATABASE_URL": url, "SOP_INBOX_DIR": str(root / "var" / "inbox")}
    ledger.dispose()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05,
             explain: Callable[[], Any] | None = None) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test saying what never happened (and ``explain()``: what
    was seen instead)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    seen = f"; seen: {explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{seen}")


def as_released_at(ledger: Ledger, revision: str) -> None:
    """The ledger's schema as the release at Alembic ``revision`` left it: every later migration downgraded (their
    tables and columns gone), so an upgrade test runs them as a site's upgrade does."""
    from alembic import command
    from alembic.config import Config

    import flows.ledger

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(flows.ledger.__file__).parent / "migrations"))
    with ledger.engine.connect() as conn:
        if not ledger.is_sqlite:  # one transaction (the engine's connections autocommit), as Ledger.migrate
            conn.execution_options(isolation_level="READ COMMITTED")
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)


def records(engine: Any, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The run's ledger records (optionally of one kind), oldest first, with data decoded."""
    from flows.ledger import utc
    from flows.ledger.schema import records as table

    query = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.seq)
    if kind:
        query = query.where(table.c.kind == kind)
    with engine.ledger.read() as conn:
        return [{**dict(r._mapping), "at": utc(r.at), "data": json.loads(r.data)} for r in conn.execute(query)]


def record_count(engine: Any, kind: str | None = None) -> int:
    """How many records (of one kind) the whole ledger holds (to prove a refusal wrote nothing)."""
    from flows.ledger.schema import records as table

    query = sa.select(sa.func.count()).select_from(table)
    if kind is not None:
        query = query.where(table.c.kind == kind)
    with engine.ledger.read() as conn:
        return conn.execute(query).scalar_one()


def step_states(engine: Any, run_id: str) -> dict[str, str]:
    view = engine.view(run_id)
    return {step_id: row["state"] for step_id, row in view.steps.items()}


class Gateway:
    """A local HTTP endpoint that fails the first ``failures`` requests with 500, then answers 200; with ``hang``
    (seconds) it holds each request that long before answering (a gateway stuck on a lock)."""

    def __init__(self) -> None:
        self.failures = 0
        self.hang = 0.0
        self.requests: list[dict[str, Any]] = []
        self._closed = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.requests.append({"path": self.path, "json": json.loads(body or b"null"), "at": time.time()})
                if gateway.hang and gateway._closed.wait(gateway.hang):
                    return  # the test is over
                status = 500 if len(gateway.requests) <= gateway.failures else 200
                payload = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Ready for the next test: a request it holds let go, no failures, no hang, nothing heard."""
        self._closed.set()
        self._closed = threading.Event()
        self.failures, self.hang, self.requests = 0, 0.0, []


_SHARED: list[Gateway] = []


def shared_gateway() -> Gateway:
    """The session's one gateway: its address is a site variable of every test project (``config.t_gateway``,
    written by :func:`make_project`), since an http step's base address may come from config only."""
    if not _SHARED:
        _SHARED.append(Gateway())
    return _SHARED[0]


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """The session's gateway, as new: what a test sets and what it heard are its own."""
    g = shared_gateway()
    g.reset()
    yield g
    g.reset()


def kind_records(ledger: Ledger, kind: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(run, step, data) of every record of a kind in the ledger, oldest first."""
    from flows.ledger.schema import records as table

    with ledger.read() as conn:
        rows = conn.execute(sa.select(table.c.run_id, table.c.step_id, table.c.data)
                            .where(table.c.kind == kind).order_by(table.c.seq))
        return [(r.run_id, r.step_id, json.loads(r.data)) for r in rows]


def assert_timers_fired_once(ledger: Ledger, run_ids: list[str], context: str) -> None:
    """No timer lost: none armed and more than 5 s past due. None fired twice: at most one escalation per level,
    one overdue per step, one run_overdue per run, one status ask and one miss per cadence period."""
    from flows.ledger import utc
    from flows.ledger.schema import timers

    with ledger.read() as conn:
        armed = conn.execute(sa.select(timers.c.run_id, timers.c.step_id, timers.c.kind, timers.c.level,
                                       timers.c.due_at).where(
            timers.c.run_id.in_(run_ids) & timers.c.fired_at.is_(None) & timers.c.cancelled_at.is_(None))).all()
    lost = [t for t in armed if utc(t.due_at) < ledger.clock.now() - timedelta(seconds=5)]
    assert not lost, f"{context}: timers armed and past due: {lost}"

    def once(kind: str, key: Callable[[str, str | None, dict[str, Any]], Any]) -> int:
        fired = Counter(key(run, step, data) for run, step, data in kind_records(ledger, kind) if run in run_ids)
        twice = {k: n for k, n in fired.items() if n > 1}
        assert not twice, f"{context}: {kind} fired more than once: {twice}"
        return sum(fired.values())

    escalations = once("escalation", lambda run, step, data: (run, step, data["level"]))
    once("step_overdue", lambda run, step, data: (run, step))
    once("run_overdue", lambda run, step, data: run)
    once("status_asked", lambda run, step, data: (run, data["period"]))
    once("status_missed", lambda run, step, data: (run, data["period"]))
    assert escalations > 0, f"{context}: no escalation fired: the ladder was not exercised"
