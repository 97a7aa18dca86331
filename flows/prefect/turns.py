"""Write turns: one holder at a time, the most urgent waiter next (then the longest waiting).

The embedded Prefect server's write transactions take their turn here, in its process, before they ask
SQLite for its one write lock (:mod:`flows.prefect.server`): SQLite's own busy handler polls, sleeping up
to 100 ms between tries, so a waiter can lose to newcomers for seconds, and it knows nothing of urgency.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class Turn:
    """An asyncio lock that hands itself to the waiter of the lowest ``priority`` (FIFO among equals)."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self, priority: int, timeout: float) -> bool:
        """Wait for the turn (True), or ``timeout`` seconds (False: the caller goes on without it)."""
        if not self._held and not self._waiting:
            self._held = True
            return True
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), handed))
        try:
            await asyncio.wait_for(asyncio.shield(handed), timeout)
            return True
        except TimeoutError:
            if handed.done():
                return True  # handed over as the wait ended
            self._give_up(handed)
            return False
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.release()  # handed over as the caller was cancelled: pass it on
            else:
                self._give_up(handed)
            raise

    def _give_up(self, handed: asyncio.Future[None]) -> None:
        """A waiter leaves its place: its future goes (a future kept would keep its event loop alive)."""
        handed.cancel()
        self._waiting = [waiter for waiter in self._waiting if waiter[2] is not handed]
        heapq.heapify(self._waiting)

    def release(self) -> None:
        """End the holder's turn: the most urgent live waiter has it next."""
        while self._waiting:
            _, _, handed = heapq.heappop(self._waiting)
            if not handed.done():
                handed.set_result(None)
                return
        self._held = False
