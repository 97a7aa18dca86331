"""Delivering side by side: the :class:`Dispatcher` (fire and forget) and :func:`deliver` (wait).

A slow destination holds only its own lane: recipients go to a thread pool, one lane per
person (their contacts in order) and one per channel URL. ``Dispatcher.submit`` returns at
once; when every lane of the submission is done, ``on_done`` gets the results (in recipient
order, whatever the order they finished in) and the returned future resolves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from flows.logfmt import kv
from notifications.addressing import Recipient
from notifications.delivery import (
    Clock,
    DeliveryResult,
    Lane,
    MessageOrFactory,
    Policy,
    deliver_lane,
    plan,
    utc_now,
)
from notifications.errors import NotificationError

log = logging.getLogger("notifications.dispatch")

OnDone = Callable[[list[DeliveryResult]], None]


class Dispatcher:
    """A pool of delivery threads. Use as a context manager, or call :meth:`close`.

    ``workers`` bounds how many destinations are contacted at once; ``timeout`` is per
    attempt (seconds), ``retries`` after the first attempt, ``backoff`` the first wait
    between attempts (doubling). ``inbox_dir`` is the site's ``settings.inbox_dir``.
    """

    def __init__(
        self,
        *,
        workers: int = 8,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        inbox_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock = utc_now,
    ):
        if workers < 1:
            raise ValueError("a dispatcher needs at least one worker")
        self.policy = Policy(
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            inbox_dir=Path(inbox_dir) if inbox_dir is not None else None,
        )
        self.env, self.clock = env, clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._closed = False

    def submit(
        self, message: MessageOrFactory, recipients: list[Recipient], on_done: OnDone | None = None
    ) -> Future[list[DeliveryResult]]:
        """Start delivering and return at once. ``message`` may be a function of the recipient.

        ``on_done(results)`` runs on a delivery thread when all destinations are done; keep it
        short. An exception in it is logged, never raised. The future gives the same results.
        """
        if self._closed:
            raise NotificationError("this dispatcher is closed; create a new one to send more")
        lanes = plan(list(recipients))
        batch = _Batch(len(lanes), on_done)
        for index, lane in enumerate(lanes):
            self._pool.submit(self._run, batch, index, message, lane)
        if not lanes:
            batch.finish()
        return batch.future

    def close(self, wait: bool = True) -> None:
        """Stop taking work; with ``wait``, return when everything submitted is delivered."""
        self._closed = True
        self._pool.shutdown(wait=wait)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(wait=True)

    def _run(self, batch: _Batch, index: int, message: MessageOrFactory, lane: Lane) -> None:
        try:
            results = deliver_lane(message, lane, self.policy, self.env, self.clock)
        except Exception as exc:  # deliver_lane never raises; if it ever does, the batch still completes
            log.error(kv("notification lane crashed", recipient=lane.recipient.id, error=type(exc).__name__))
            results = []
        batch.done(index, results)


class _Batch:
    """The lanes of one submission: collects their results, then completes once."""

    def __init__(self, lanes: int, on_done: OnDone | None):
        self.slots: list[list[DeliveryResult]] = [[] for _ in range(lanes)]
        self.remaining = lanes
        self.on_done = on_done
        self.future: Future[list[DeliveryResult]] = Future()
        self.lock = threading.Lock()

    def done(self, index: int, results: list[DeliveryResult]) -> None:
        with self.lock:
            self.slots[index] = results
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.finish()

    def finish(self) -> None:
        results = [result for slot in self.slots for result in slot]
        if self.on_done is not None:
            try:
                self.on_done(results)
            except Exception as exc:
                log.error(kv("notification callback failed", error=f"{type(exc).__name__}: {exc}"))
        self.future.set_result(results)


def deliver(
    message: MessageOrFactory,
    recipients: list[Recipient],
    *,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
    concurrency: int = 8,
    inbox_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock = utc_now,
) -> list[DeliveryResult]:
    """Deliver and wait: one :class:`DeliveryResult` per destination tried, in recipient order.

    Never raises for a failed delivery. Up to ``concurrency`` destinations are contacted at
    once (1: one after the other). Worst case per destination: ``(1 + retries) * timeout``
    plus the backoff, for each contact a person has.
    """
    recipients = list(recipients)
    if not recipients:
        return []
    workers = max(1, min(concurrency, len(plan(recipients))))
    with Dispatcher(
        workers=workers, timeout=timeout, retries=retries, backoff=backoff, inbox_dir=inbox_dir, env=env, clock=clock
    ) as dispatcher:
        return dispatcher.submit(message, recipients).result()
