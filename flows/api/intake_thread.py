"""The intake thread: every webhook's intake runs on one thread, and what queues up may share one ledger transaction.

The ledger has one writer at a time, so a pool of threads handing it intakes only queued
on its lock. Here they queue in arrival order without contending for it, and the calls
that queued while the thread was busy run as one batch (group commit: begin, the hash
chain's last record and commit are paid once) where a commit's cost is worth sharing (SQLite;
PostgreSQL when a commit waits for the disk: ``Ledger.groups_commits``; otherwise each is a
transaction of its own, and a repeat on an open run one round trip). Every webhook hands its
intake here.

A call that finds no other queued waits a little (``linger``, 1 ms) for the requests the
event loop is serving meanwhile, when there are any (PostgreSQL's ``commit_delay`` with
``commit_siblings``, here counted by :meth:`IntakeThread.serving`). Without it, two clients
of one process take turns: each call arrives while the other's transaction runs, and every
call pays a transaction of its own (on PostgreSQL, 1 call per batch in the team bench; with
it, 2: docs/benchmarks.md, "Team ingest").
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("sop.api")


class IntakeThread:
    """One thread running intake calls in arrival order; ``await run(fn, *args)`` from the event loop.

    With a ledger, the calls queued together (at most ``max_batch``) run in one ledger
    transaction (:meth:`Ledger.batch`, group commit); when any of them raises, the batch is
    rolled back and each call runs again on its own, so one bad call fails only itself.
    Without ``one_transaction`` (PostgreSQL when a commit does not wait for the disk:
    :attr:`Ledger.groups_commits`) each call is a transaction of its own.
    """

    def __init__(self, ledger: Any = None, max_batch: int = 8, name: str = "api-intake", linger: float = 0.001,
                 one_transaction: bool = True):
        self.ledger = ledger
        self.one_transaction = one_transaction
        self.max_batch = max_batch if ledger is not None and one_transaction else 1
        #: seconds a batch waits for more calls while other requests are being served (0: never)
        self.linger = linger if one_transaction else 0.0
        self.largest_batch = 0  # the most calls that shared one transaction so far
        self._serving = 0  # requests being served (serving()); read by the thread
        self._serving_lock = threading.Lock()  # an app's requests may come from more than one event loop
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the intake thread and return (or raise) what it did."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put(_Call(fn, args, future))
        return await future

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Around a request that may hand a call here, from its arrival to its answer: while it is served, a lone
        call lingers for its call (or for its client's next one, once it is answered). A request that ends
        without a call (refused, or a slow body) costs a lone call at most ``linger``."""
        with self._serving_lock:
            self._serving += 1
        try:
            yield
        finally:
            with self._serving_lock:
                self._serving -= 1

    def close(self, timeout: float = 10.0) -> None:
        """Finish the calls already queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            calls = [first]
            until = 0.0
            while len(calls) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    if self._serving <= len(calls) or self.linger <= 0:  # no other request coming
                        break
                    until = until or time.monotonic() + self.linger
                    try:
                        more = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                    except queue.Empty:
                        break
                if more is None:
                    stopping = True
                    break
                calls.append(more)
            if len(calls) > 1 and self._together(calls):
                continue
            for call in calls:
                call.run()
                call.settle()

    def _together(self, calls: list[_Call]) -> bool:
        """Run ``calls`` in one batch and settle them; False (nothing settled) when any raised."""
        self.largest_batch = max(self.largest_batch, len(calls))
        try:
            with self.ledger.batch(per_run=True):
                for call in calls:
                    call.run()
                    if call.error is not None:
                        raise _Retry
        except Exception as exc:  # a call raised, or the commit itself failed: run each alone, each says why
            if not isinstance(exc, _Retry):
                log.warning("event=intake_batch_failed calls=%d (running them one by one)", len(calls), exc_info=True)
            for call in calls:
                call.error = None
            return False
        _settle_all(calls)
        return True


class _Retry(Exception):
    """A call of a batch raised: roll the batch back and run its calls alone."""


class _Call:
    """One queued intake call and the future of the request awaiting it."""

    __slots__ = ("fn", "args", "future", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]):
        self.fn, self.args, self.future = fn, args, future
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except Exception as exc:  # handed to the awaiting request, which answers for it
            self.error = exc

    def settle(self) -> None:
        self.future.get_loop().call_soon_threadsafe(_settle, self.future, self.result, self.error)


def _settle_all(calls: list[_Call]) -> None:
    """Settle a batch's calls with one wake-up of the event loop (each wake-up is a write to its pipe)."""
    loop = calls[0].future.get_loop()
    if any(call.future.get_loop() is not loop for call in calls):
        for call in calls:
            call.settle()
        return
    loop.call_soon_threadsafe(_settle_each, [(call.future, call.result, call.error) for call in calls])


def _settle_each(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in settled:
        _settle(future, result, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():  # the client went away; the intake itself was done and is recorded
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
