"""How long delivering 1,000 notifications to a loopback endpoint takes, sequential versus concurrent.

A receiver in a separate process (so its work does not share our GIL) answers ``json://``
posts on 127.0.0.1, at once or after a delay that stands in for a real service's latency.
Each row delivers ``N`` messages (one recipient each) and checks the receiver got them all:

- ``apprise`` — bare ``Apprise.notify`` in a loop: the floor our pipeline adds to;
- ``deliver`` with 1 worker (sequential) and with 8 and 32 (concurrent);
- ``Dispatcher`` — the engine's fire-and-forget path: how long ``submit`` holds the caller,
  and how long until every callback has run.

``python -m bench notify``; ``BENCH_NOTIFY_N`` changes N. Writes ``bench/out/notify.json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path

import apprise
from rich.console import Console
from rich.table import Table

from notifications import DeliveryResult, Dispatcher, Message, Recipient, deliver

N = int(os.environ.get("BENCH_NOTIFY_N", "1000"))
OUT = Path(__file__).resolve().parent / "out" / "notify.json"
MESSAGE = Message(
    title="[P2] Reminder: Check the CDN",
    body="Step **cdn-check** is due in 10m.\n\n`sop done r1 cdn-check`",
    notify_type="warning",
    priority=2,
    kind="reminder",
)


def _serve(pipe: Connection) -> None:
    """The receiver process: POST /<delay ms>/... → 200 after the delay; GET /count → requests so far."""
    count = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            nonlocal count
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            delay = int(self.path.strip("/").split("/")[0] or 0)
            if delay:
                time.sleep(delay / 1000)
            with lock:
                count += 1
            self._answer(b"{}")

        def do_GET(self) -> None:  # noqa: N802
            self._answer(str(count).encode())

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.request_queue_size = 512
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    pipe.send(server.server_port)
    server.serve_forever()


@dataclass
class Row:
    mode: str
    delay_ms: int
    workers: str
    seconds: float
    ok: int
    latencies: list[float]
    blocked: float | None = None

    def summary(self) -> dict[str, object]:
        """The row's figures, as printed and as written to ``bench/out/notify.json``."""
        cuts = statistics.quantiles(self.latencies, n=20) if len(self.latencies) > 1 else [0.0] * 19
        return {
            "mode": self.mode,
            "delay_ms": self.delay_ms,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "per_s": round(N / self.seconds, 1),
            "p50_ms": round(statistics.median(self.latencies) * 1000, 2),
            "p95_ms": round(cuts[18] * 1000, 2),
            "delivered": self.ok,
            "n": N,
            "caller_held_s": None if self.blocked is None else round(self.blocked, 4),
        }


class Receiver:
    """The receiver process and its address."""

    def __init__(self) -> None:
        parent, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        self.port: int = parent.recv()

    def url(self, delay_ms: int, i: int) -> str:
        return f"json://127.0.0.1:{self.port}/{delay_ms}/r{i}"

    def count(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=5) as answer:
            return int(answer.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


def people(receiver: Receiver, delay_ms: int) -> list[Recipient]:
    return [Recipient(id=f"p{i}", name=f"P{i}", kind="person", urls=(receiver.url(delay_ms, i),)) for i in range(N)]


def timed(receiver: Receiver, action: Callable[[], list[DeliveryResult]]) -> tuple[float, list[DeliveryResult], int]:
    before = receiver.count()
    started = time.perf_counter()
    results = action()
    elapsed = time.perf_counter() - started
    return elapsed, results, receiver.count() - before


def bare_apprise(receiver: Receiver, delay_ms: int) -> Row:
    latencies, ok = [], 0
    started = time.perf_counter()
    for i in range(N):
        one = time.perf_counter()
        sender = apprise.Apprise()
        sender.add(receiver.url(delay_ms, i))
        ok += bool(sender.notify(body=MESSAGE.body, title=MESSAGE.title, notify_type=apprise.NotifyType.WARNING))
        latencies.append(time.perf_counter() - one)
    return Row("apprise (bare, sequential)", delay_ms, "1", time.perf_counter() - started, ok, latencies)


def with_deliver(receiver: Receiver, delay_ms: int, workers: int) -> Row:
    recipients = people(receiver, delay_ms)
    elapsed, results, arrived = timed(
        receiver, lambda: deliver(MESSAGE, recipients, concurrency=workers, timeout=5, retries=0)
    )
    ok = min(arrived, sum(r.ok for r in results))
    label = "deliver, sequential" if workers == 1 else "deliver, concurrent"
    return Row(label, delay_ms, str(workers), elapsed, ok, [r.latency for r in results])


def with_dispatcher(receiver: Receiver, delay_ms: int, workers: int) -> Row:
    recipients = people(receiver, delay_ms)
    collected: list[DeliveryResult] = []
    lock = threading.Lock()
    all_done = threading.Event()

    def on_done(results: list[DeliveryResult]) -> None:
        with lock:
            collected.extend(results)
            if len(collected) == N:
                all_done.set()

    before = receiver.count()
    with Dispatcher(workers=workers, timeout=5, retries=0) as dispatcher:
        started = time.perf_counter()
        for recipient in recipients:
            dispatcher.submit(MESSAGE, [recipient], on_done=on_done)
        blocked = time.perf_counter() - started
        all_done.wait(600)
        elapsed = time.perf_counter() - started
    ok = min(receiver.count() - before, sum(r.ok for r in collected))
    return Row(
        "Dispatcher.submit + callback", delay_ms, str(workers), elapsed, ok, [r.latency for r in collected], blocked
    )


def main() -> None:
    """Run every mode against the loopback receiver, print the table and write bench/out/notify.json."""
    console = Console(width=max(Console().width, 150))
    load = os.getloadavg()
    receiver = Receiver()
    rows: list[Row] = []
    try:
        deliver(MESSAGE, people(receiver, 0)[:20], concurrency=4)  # warm-up: plugin loading, connections
        for delay in (0, 5):
            rows.append(bare_apprise(receiver, delay))
            rows.append(with_deliver(receiver, delay, 1))
            rows.append(with_deliver(receiver, delay, 8))
            rows.append(with_deliver(receiver, delay, 32))
            rows.append(with_dispatcher(receiver, delay, 32))
    finally:
        receiver.stop()
    table = Table(
        title=f"Delivering {N:,} notifications to a loopback json:// endpoint "
        f"({os.cpu_count()} CPUs, receiver in its own process)",
        title_justify="left",
    )
    for column in (
        "mode",
        "endpoint delay",
        "workers",
        "total s",
        "per s",
        "p50 ms",
        "p95 ms",
        "delivered",
        "caller held s",
    ):
        table.add_column(column, justify="left" if column == "mode" else "right")
    summaries = [row.summary() for row in rows]
    for s in summaries:
        table.add_row(
            str(s["mode"]),
            f"{s['delay_ms']} ms",
            str(s["workers"]),
            f"{s['seconds']:.2f}",
            f"{s['per_s']:,.0f}",
            f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            f"{s['delivered']}/{N}",
            f"{s['caller_held_s']:.3f}" if s["caller_held_s"] is not None else "—",
        )
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "n": N,
                "cores": os.cpu_count(),
                "load_average_at_start": load[0],
                "at": datetime.now(UTC).isoformat(),
                "rows": summaries,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
