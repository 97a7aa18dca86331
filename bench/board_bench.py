"""The ops manager's board with 500 open runs: render time, and how soon a ledger change shows on the page.

python -m bench board       # BENCH_BOARD_RUNS=500, BENCH_BOARD_N=50

The API (pages included) runs in its own process, as ``sop serve`` serves it, on a fresh
SQLite ledger with BENCH_BOARD_RUNS open runs of the library's SOPs (P1…P4), no Prefect.
An operator's session is begun in the ledger directly (the sign-in link is the pages'
own business, measured elsewhere).

- **board render**: ``GET /board`` (every open run, the whole HTML received), N times;
  beside it the rows alone (``/board/rows``, what each live update sends).
- **live-update delay**: Debian's Chromium shows the board; a person takes a step through
  the engine (``Engine.claim`` on the same ledger, as the API or a page would), and we time
  until the page shows it, with no reload. N times.

Goals (issue #18): board render p99 ≤ 200 ms with 500 open runs; live-update delay p99 ≤ 1 s.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from flows.engine.build import build_engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.web.sessions import COOKIE, SessionStore
from tests.support import api_process, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_BOARD_RUNS", "500"))
N = int(os.environ.get("BENCH_BOARD_N", "50"))
GOALS = {"board render": 200.0, "live update": 1000.0}
#: open runs of every class, as a busy week would have them
MIX = (("crisis-pr", "brand"), ("traffic-drop", "site"), ("creative-refresh", "platform"), ("ab-rollout", "experiment_id"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    console = Console(width=max(Console().width, 120))
    workdir = Path(tempfile.mkdtemp(prefix="bench-board-"))
    token = "bench-operator-" + uuid.uuid4().hex[:8]
    database = f"sqlite:///{workdir / 'ledger.db'}"
    env = {**os.environ, "SOP_HOME": str(ROOT), "SOP_DATABASE_URL": database, "SOP_INBOX_DIR": str(workdir / "inbox"),
           "SOP_API_LAUNCH": "0", "SOP_TOKEN_OPERATOR": token}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / "api.log", "wb")  # noqa: SIM115 - closed below
    process = api_process(env, port, workdir, stdout=log, stderr=subprocess.STDOUT)
    rows: list[tuple[str, list[float], str]] = []
    load = os.getloadavg()
    try:
        wait_healthy(process, url, 60)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        library = load_library(ROOT)
        started = []
        for i in range(RUNS):
            sop, key = MIX[i % len(MIX)]
            inputs = {key: f"b-{i}-{uuid.uuid4().hex[:6]}"} | _required(library, sop, key)
            answer = api.post("/v1/runs", json={"sop": sop, "inputs": inputs})
            answer.raise_for_status()
            started.append((sop, answer.json()["run"]))
        ledger = Ledger(database)
        cookie, _ = SessionStore(ledger, timedelta(hours=1)).begin("li-wei", "sign-in")
        browser_client = httpx.Client(base_url=url, cookies={COOKIE: cookie}, timeout=60)
        count = browser_client.get("/board").text.count('class="card run')
        assert count >= RUNS, f"the board shows {count} runs, expected {RUNS}"
        render, fragment = [], []
        for _ in range(N):
            began = time.perf_counter()
            page = browser_client.get("/board")
            render.append((time.perf_counter() - began) * 1000)
            assert page.status_code == 200
            began = time.perf_counter()
            browser_client.get("/board/rows")
            fragment.append((time.perf_counter() - began) * 1000)
        rows.append(("board render", render, f"GET /board, {RUNS} open runs"))
        rows.append(("rows only", fragment, "GET /board/rows (what a live update sends)"))
        if CHROMIUM:
            engine = build_engine(library, ledger=ledger)
            rows.append(("live update", _live_delays(url, cookie, engine, [r for s, r in started if s == "crisis-pr"]),
                         "claim → shown on the open page (Chromium)"))
            engine.pager.close()
        else:
            console.print("[yellow]chromium missing: live-update delay not measured (sudo make deps-system)[/]")
    finally:
        process.terminate()
        process.wait(15)
        log.close()
    table = Table(title=f"the board with {RUNS} open runs (n={N}; load {load[0]:.2f})", title_justify="left")
    for column in ("what", "p50 ms", "p99 ms", "max ms", "goal (p99)", "met", "how"):
        table.add_column(column, justify="left" if column in ("what", "how") else "right")
    for name, values, how in rows:
        goal = GOALS.get(name)
        p99 = pct(values, 99)
        table.add_row(name, f"{statistics.median(values):.1f}", f"{p99:.1f}", f"{max(values):.1f}",
                      f"≤ {goal:g} ms" if goal else "", "" if goal is None else ("yes" if p99 <= goal else "NO"), how)
    console.print(table)


def _required(library, sop_id: str, key: str) -> dict:  # noqa: ANN001
    """Values for the SOP's other required inputs (the bench starts real runs through the API's checks)."""
    out = {}
    for name, spec in library.sops[sop_id].sop.inputs.items():
        if name != key and spec.is_required:
            out[name] = spec.enum[0] if spec.enum else {"integer": 1, "number": 1.5, "boolean": True}.get(spec.type, "x")
    return out


def _live_delays(url: str, cookie: str, engine, run_ids: list[str]) -> list[float]:  # noqa: ANN001
    from playwright.sync_api import sync_playwright

    delays = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context()
        context.add_cookies([{"name": COOKIE, "value": cookie, "url": url}])
        page = context.new_page()
        page.goto(f"{url}/board")
        for run_id in run_ids[:N]:
            page.wait_for_timeout(300)  # the page's long poll is waiting again
            began = time.perf_counter()
            engine.claim(run_id, "assess", "sara-lopez")
            page.wait_for_function(f"(document.querySelector('#run-{run_id}') || {{}}).textContent"
                                   f"?.includes('taken by Sara Lopez')", timeout=10_000, polling="raf")
            delays.append((time.perf_counter() - began) * 1000)
        browser.close()
    return delays


if __name__ == "__main__":
    main()
