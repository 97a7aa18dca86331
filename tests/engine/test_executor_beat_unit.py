"""An executor keeps beating while Prefect is slow to answer it: a nudger must not take it for dead and
rescue the flow runs it is running (flows/prefect/rescue.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.engine.outbox import BEAT_EVERY
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import executors
from flows.prefect import executor as executor_module
from flows.prefect.executor import Executor

SLOW_S = 3 * BEAT_EVERY  # a Prefect server answering this late (it may take its 60 s request timeout)


class SlowPrefect:
    """Answers the executor's queue read after SLOW_S seconds, every time."""

    def __init__(self) -> None:
        self.reading = threading.Event()

    def get_scheduled_flow_runs_for_work_pool(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        self.reading.set()
        time.sleep(SLOW_S)
        return []

    def send_worker_heartbeat(self, *_args: Any, **_kwargs: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _attempts_run_again_after() -> Iterator[None]:
    """An executor stopped here holds every later attempt of this process (the tests after these, in-process)."""
    yield
    from flows.prefect.attempts import ATTEMPTS

    ATTEMPTS.resume()


def test_an_executor_beats_while_prefect_is_slow(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    slow = SlowPrefect()

    @contextmanager
    def client(*_args: Any) -> Iterator[SlowPrefect]:
        yield slow

    monkeypatch.setattr(executor_module.inprocess, "shared_client", client)
    worker = Executor(load_library(repo_root), ledger, "http://127.0.0.1:9/api", "pool", poll=0.1, name="beat-test")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"drain": 1.0}, daemon=True)
    thread.start()
    try:
        assert slow.reading.wait(10), "the executor never read its queue"
        beats: set[datetime] = set()
        until = time.monotonic() + SLOW_S - 0.5  # inside the first slow read
        while time.monotonic() < until:
            with ledger.read() as conn:
                beats.update(conn.execute(sa.select(executors.c.beat_at).where(executors.c.name == "beat-test")).scalars())
            time.sleep(0.2)
        # its first beat, then one every BEAT_EVERY seconds although the loop waits on Prefect
        assert len(beats) >= 3, f"beats while Prefect was slow: {sorted(beats)}"
        newest = max(b.replace(tzinfo=UTC) if b.tzinfo is None else b for b in beats)
        assert (datetime.now(UTC) - newest).total_seconds() < BEAT_EVERY + 1.0
    finally:
        stop.set()
        thread.join(timeout=SLOW_S + 5)
        ledger.dispose()


def test_an_executor_that_ran_and_stopped_in_this_process_does_not_hold_the_next_ones_attempts(
        repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping holds every attempt of the process (its end is near); an executor run after it in the same process
    (a test, an embedding) starts attempts again, instead of every step waiting for ever (review)."""
    from flows.prefect.attempts import ATTEMPTS

    test_an_executor_beats_while_prefect_is_slow(repo_root, tmp_path, monkeypatch)  # one ran and stopped here
    ATTEMPTS.stop()  # (whether or not its stop got there)
    ledger = Ledger(f"sqlite:///{tmp_path / 'second.db'}")
    ledger.migrate()
    worker = Executor(load_library(repo_root), ledger, "http://127.0.0.1:9/api", "pool", poll=0.1, name="second")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"drain": 1.0}, daemon=True)
    thread.start()
    try:
        ran = threading.Event()

        def attempt() -> None:
            with ATTEMPTS.attempt("flow-run-x", retries_left=False):
                ran.set()

        deadline = time.monotonic() + 10
        while not ran.is_set() and time.monotonic() < deadline:
            threading.Thread(target=attempt, daemon=True).start()
            ran.wait(0.5)
        assert ran.is_set(), "an attempt of the second executor waited for the process's end"
    finally:
        stop.set()
        thread.join(timeout=SLOW_S + 5)
        ledger.dispose()
