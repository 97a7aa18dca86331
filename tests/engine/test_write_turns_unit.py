"""Write turns on the embedded Prefect server: the most urgent waiting write goes next (a complaint run's before
routine runs' that waited longer), equals in arrival order, and a wait is bounded. A Prefect client says the
urgency of the run it serves, and the server's API reads it."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flows.prefect import server, urgency
from flows.prefect.turns import Turn


async def _order(arrivals: list[tuple[str, int]]) -> list[str]:
    """Who holds the turn, in order, when ``arrivals`` queue (name, priority) while it is held."""
    turn, served = Turn(), []
    assert await turn.acquire(5, timeout=1)

    async def write(name: str, priority: int) -> None:
        assert await turn.acquire(priority, timeout=5)
        served.append(name)
        await asyncio.sleep(0)
        turn.release()

    waiting = []
    for name, priority in arrivals:
        waiting.append(asyncio.create_task(write(name, priority)))
        await asyncio.sleep(0)  # queued in this order
    turn.release()
    await asyncio.gather(*waiting)
    assert not turn.held
    return served


def test_the_most_urgent_waiting_write_goes_next_and_equals_in_arrival_order() -> None:
    served = asyncio.run(_order([("routine-1", 4), ("routine-2", 4), ("complaint", 1), ("unsaid", 1000),
                                 ("routine-3", 4), ("outage", 2)]))
    assert served == ["complaint", "outage", "routine-1", "routine-2", "routine-3", "unsaid"]


def test_a_write_that_waits_too_long_goes_on_without_its_turn_and_is_skipped_later() -> None:
    async def scene() -> list[str]:
        turn, served = Turn(), []
        assert await turn.acquire(1, timeout=1)
        assert not await turn.acquire(1, timeout=0.05)  # the holder is slow: this one goes on without a turn
        late = asyncio.create_task(turn.acquire(4, timeout=5))
        await asyncio.sleep(0)
        turn.release()  # the next live waiter has it, not the one that left
        assert await late
        served.append("late")
        turn.release()
        assert not turn.held
        return served

    assert asyncio.run(scene()) == ["late"]


def test_a_write_cancelled_while_it_waits_gives_its_place_up() -> None:
    async def scene() -> None:
        turn = Turn()
        assert await turn.acquire(1, timeout=1)
        gone = asyncio.create_task(turn.acquire(1, timeout=5))
        after = asyncio.create_task(turn.acquire(4, timeout=5))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        turn.release()
        assert await after  # the cancelled one did not keep the turn
        turn.release()
        assert not turn.held

    asyncio.run(scene())


def test_the_servers_api_reads_each_requests_urgency() -> None:
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(server._priority.get())

    prioritised = server.with_priorities(app)
    for headers in ([(b"x-sop-priority", b"1")], [], [(b"x-sop-priority", b"soon")]):
        asyncio.run(prioritised({"type": "http", "headers": headers}, None, None))
    assert seen == [1, server.UNHURRIED, server.UNHURRIED]


def test_a_prefect_client_says_the_urgency_of_the_run_it_serves() -> None:
    said: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            said.append(self.headers.get(urgency.HEADER))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        from flows.prefect.launcher import open_client

        client = open_client(f"http://127.0.0.1:{http.server_port}/api")
        try:
            with urgency.urgent(1):
                client._client.get("/health")
            client._client.get("/health")
        finally:
            client.__exit__(None, None, None)
    finally:
        http.shutdown()
    assert said == ["1", None]


def test_an_event_loops_turn_goes_with_the_loop() -> None:
    """A process that runs many event loops one after another (each ``asyncio.run``) keeps no turn of those gone."""
    import gc

    async def take_a_turn() -> None:
        turn = server._turn()
        assert await turn.acquire(5, timeout=1)
        turn.release()

    before = len(server._turns)
    for _ in range(20):
        asyncio.run(take_a_turn())
    gc.collect()
    assert len(server._turns) == before


def test_a_loop_that_ends_while_a_write_that_gave_up_held_its_place_is_not_kept() -> None:
    """A write that waited past its bound leaves its place at once: a loop that ends while the turn is still held
    (its holder never released it) leaves nothing of itself behind either."""
    import gc

    async def held_forever_and_a_write_gives_up() -> None:
        turn = server._turn()
        assert await turn.acquire(5, timeout=1)
        assert not await turn.acquire(5, timeout=0.01)  # went on without its turn
        assert not turn._waiting

    before = len(server._turns)
    for _ in range(5):
        asyncio.run(held_forever_and_a_write_gives_up())
    gc.collect()
    assert len(server._turns) == before
