"""A ring names its flow run's queue: a complaint run is taken at once while routine runs wait for a thread, and a
routine run that rings then waits its turn behind them (Prefect's order: priority, then age)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest

from flows.language.library import load_library
from flows.ledger import Ledger
from flows.prefect.executor import Executor


def _scheduled(queue: str) -> Any:
    return SimpleNamespace(id=uuid4(), work_queue_name=queue, state=SimpleNamespace(is_scheduled=lambda: True))


class Queues:
    """A Prefect server whose pool has a complaint and a routine queue, three routine runs waiting."""

    def __init__(self) -> None:
        self.routine = [_scheduled("routine") for _ in range(3)]
        self.runs = {str(r.id): r for r in self.routine}
        self.read: list[str] = []  # flow runs read one by one

    def read_work_pool(self, _pool: str) -> Any:
        return SimpleNamespace(is_paused=False)

    def read_work_queues(self, **_kwargs: Any) -> list[Any]:
        return [SimpleNamespace(name="routine", priority=4, is_paused=False),
                SimpleNamespace(name="complaint", priority=1, is_paused=False)]

    def read_flow_runs(self, *, flow_run_filter: Any, limit: int, **_kwargs: Any) -> list[Any]:
        queue = flow_run_filter.work_queue_name.any_[0]
        return [r for r in self.routine if queue == "routine"][:limit]

    def read_flow_run(self, flow_run_id: UUID) -> Any:
        self.read.append(str(flow_run_id))
        return self.runs[str(flow_run_id)]


def test_a_complaint_ring_is_taken_at_once_and_a_routine_ring_waits_its_turn(
        repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    prefect = Queues()
    worker = Executor(load_library(repo_root), ledger, "http://127.0.0.1:9/api", "pool", slots=3, name="rings-test")
    taken: list[str] = []
    ends = {r: threading.Event() for r in prefect.runs}
    took = threading.Semaphore(0)

    def take_and_run(_client: Any, flow_run: Any) -> None:  # Pending accepted: the run holds its thread to its end
        taken.append(str(flow_run.id))
        took.release()
        ends.setdefault(str(flow_run.id), threading.Event()).wait(10)
        worker._release(str(flow_run.id))

    def arrives(queue: str) -> str:
        run = _scheduled(queue)
        prefect.runs[str(run.id)] = run
        return str(run.id)

    monkeypatch.setattr(worker, "_take_and_execute", take_and_run)
    first, second, third = (str(r.id) for r in prefect.routine)
    try:
        # three threads: the routine queue leaves one for the complaint queue above it; two routine runs run,
        # the third waits
        assert worker.take(prefect) == 2
        assert took.acquire(timeout=10) and took.acquire(timeout=10) and sorted(taken) == sorted([first, second])
        ends[first].set()  # a routine run ends: a thread beyond the complaint's is free again
        while worker.free() < 2:
            time.sleep(0.01)

        late = arrives("routine")
        worker.take_one(prefect, late, "routine")  # rung, but the third routine run waits before it
        complaint = arrives("complaint")
        assert worker.take_one(prefect, complaint, "complaint")
        assert took.acquire(timeout=10) and taken[2] == complaint  # at once, while routine runs wait
        assert late not in taken and prefect.read == [complaint]  # the late routine run was not even read
    finally:
        for end in ends.values():
            end.set()
        ledger.dispose()
