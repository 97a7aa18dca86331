"""`sop executor` reloaded (SIGHUP) while flow runs hold its engine: the engine it replaced is retired when the last
of them lets go (its pages in flight delivered, its ledger closed unless the new engine runs on it); each reload
left one behind. The real engine and ledger in this process; no Prefect server (the flow runs here hold the engine
as a flow run and an attempt of its step do)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flows.language.library import load_library
from flows.ledger import Ledger
from flows.prefect import flow_run
from tests.engine.conftest import make_project


def _open_connections(ledger: Ledger) -> int:
    """The connections the ledger's pools hold open, idle or in use (what a ledger left behind holds on PostgreSQL)."""
    pools = {id(e.pool): e.pool for e in (ledger.engine, ledger.reader)}
    return sum(pool.checkedin() + pool.checkedout() for pool in pools.values())


@pytest.fixture
def executor(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: Any) -> Any:
    """This process as `sop executor` makes it (its flows run on one library), on a ledger of the test's; yields the
    project and the engines retired so far, in order. The module's state is the test's alone."""
    project = make_project(repo_root, tmp_path / "site", only=("t-approval",))
    url = database.url_at(tmp_path / "ledger.db")
    Ledger(url).migrate()
    monkeypatch.setenv("SOP_HOME", str(project))
    monkeypatch.setenv("SOP_DATABASE_URL", url)
    monkeypatch.setenv("SOP_INBOX_DIR", str(project / "var" / "inbox"))
    for name in ("_flow_run_library", "_flow_run_engine", "_resume_tokens"):
        monkeypatch.setattr(flow_run, name, None)
    monkeypatch.setattr(flow_run, "_holders", Counter())
    monkeypatch.setattr(flow_run, "_retired", {})
    retired: list[Any] = []
    real = flow_run.retire
    monkeypatch.setattr(flow_run, "retire", lambda engine, successor: (retired.append(engine), real(engine, successor)))
    yield project, retired
    flow_run.use_library(load_library(project))  # the last engine, which nothing holds, retired


def test_the_engine_a_reload_replaced_is_retired_when_its_last_flow_run_lets_go(executor: Any) -> None:
    project, retired = executor
    flow_run.use_library(load_library(project))
    with flow_run.held_engine() as first:  # a flow run under way
        run_id = first.start("t-approval", {}, initiator="li-wei").run_id
        flow_run.use_library(load_library(project))  # SIGHUP: flow runs taken from now on run the new library
        with flow_run.held_engine() as attempt:  # an attempt of its step, begun after the reload
            assert attempt is not first
            assert retired == []  # the run still holds the first one
        first.view(run_id)  # and goes on with it
    assert retired == [first]  # the last to hold it let go
    ledger = attempt.ledger  # one ledger per database URL per process: the new engine runs on it, it stays open
    assert ledger is first.ledger and _open_connections(ledger) >= 1 and attempt.view(run_id).is_open

    flow_run.use_library(load_library(project))  # another SIGHUP, nothing running: retired at once
    assert retired == [first, attempt]
    with flow_run.held_engine() as third:
        assert third not in retired and third.view(run_id).is_open


def test_a_ledger_left_by_a_reload_onto_another_database_is_closed_once_its_runs_are_done(
        executor: Any, monkeypatch: pytest.MonkeyPatch, database: Any, tmp_path: Path) -> None:
    """A reload whose library runs on another database (settings.database_url changed, no SOP_DATABASE_URL; here
    the variable changed): the old ledger's connections stay open while a flow run uses them, and are closed when it
    lets go: a pool per such reload was left open (on PostgreSQL, up to max_connections)."""
    project, retired = executor
    flow_run.use_library(load_library(project))
    moved = database.url_at(tmp_path / "moved.db")
    Ledger(moved).migrate()
    with flow_run.held_engine() as first:
        first.start("t-approval", {}, initiator="li-wei")
        monkeypatch.setenv("SOP_DATABASE_URL", moved)
        flow_run.use_library(load_library(project))
        assert _open_connections(first.ledger) >= 1
    assert retired == [first] and _open_connections(first.ledger) == 0
    with flow_run.held_engine() as second:
        assert second.ledger is not first.ledger and second.ledger.url == moved
