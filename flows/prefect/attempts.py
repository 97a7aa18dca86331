"""The automated steps' attempts under way in this process, per flow run: what a stopping executor waits for.

An executor told to stop (SIGTERM) lets an attempt under way end (an http call, a command) within its bound, but
not a retry's wait: Prefect sleeps between two attempts of a step on the flow run's thread (``retry_delay``, which
doubles each time), and waiting for that sleep made a stop take its whole bound and more. So a flow run that is
between two attempts, or whose next attempt would start after the stop, is *idle*: the attempt does not start (its
thread waits for the process to end) and the executor puts the flow run back in its queue, where another executor
reruns it from the ledger: the step, still ``running`` there, runs again, never lost, with the attempts it has
left (the ledger counts them: ``flow_run._submit``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Attempts:
    """Attempts under way and flow runs between attempts, in this process; :meth:`stop` lets no new one start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._under_way: Counter[str] = Counter()
        self._between: set[str] = set()
        self._stopping = False
        self._never = threading.Event()  # what a held attempt waits on: the process's end

    @contextmanager
    def attempt(self, flow_run_id: str, retries_left: bool) -> Iterator[None]:
        """One attempt of a step of ``flow_run_id``. Once the process is stopping it never starts: it waits here
        until the process ends. ``retries_left``: when this attempt fails, Prefect waits, then tries again."""
        with self._lock:
            held = self._stopping
            if held:
                self._between.add(flow_run_id)
            else:
                self._under_way[flow_run_id] += 1
                self._between.discard(flow_run_id)
        if held:
            self._never.wait()
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            with self._lock:
                self._under_way[flow_run_id] -= 1
                if not self._under_way[flow_run_id]:
                    del self._under_way[flow_run_id]
                if failed and retries_left:
                    self._between.add(flow_run_id)

    def stop(self) -> None:
        """Start no attempt from now on (each waits for the process to end)."""
        with self._lock:
            self._stopping = True

    def resume(self) -> None:
        """Attempts start again: an executor runs in this process after another one stopped (a test, an embedding)."""
        with self._lock:
            self._stopping = False

    def idle(self, flow_run_id: str) -> bool:
        """Whether ``flow_run_id`` waits for a retry (or for an attempt held by :meth:`stop`) with none under way:
        it may be put back in its queue now, losing nothing."""
        with self._lock:
            return flow_run_id in self._between and not self._under_way[flow_run_id]

    def forget(self, flow_run_id: str) -> None:
        """The flow run left this process's hands (suspended, finished, put back)."""
        with self._lock:
            self._between.discard(flow_run_id)


#: this process's attempts (``sop executor`` runs every flow run in one process)
ATTEMPTS = Attempts()
