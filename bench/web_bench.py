"""The step page against the API, in one run: open-to-rendered and submit-to-next-assignee.

python -m bench web       # BENCH_WEB_N=200 runs per path by default

The API runs in its own process (``uvicorn --factory flows.runtime.web:from_environment``, as
``sop serve`` serves it, on a fresh SQLite ledger, pages delivered to a local inbox, no
Prefect: the launcher's resume after a report is the same for both paths and left out).
For each crisis-pr run, interleaved:

- **page**: a responder's personal link for ``assess`` is opened (``GET /s/<token>``, the
  whole HTML received: open-to-rendered), then the form is posted (``POST /s/<token>``:
  the answer comes once the report is recorded and the next steps, ``facts`` and
  ``legal``, are assigned and their pages queued: submit-to-next-assignee);
- **api**: the same report through ``POST /v1/runs/{id}/steps/assess`` (operator token,
  JSON), answered at the same point.

Goals (issue #15): open p99 ≤ 50 ms, submit p99 ≤ 100 ms.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from flows.clock import SystemClock
from flows.engine.links import Links
from tests.support import api_process, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BENCH_WEB_N", "200"))
WARM = 10
FORM = {"severity": "high", "topic": "late parcels", "category": "delivery", "platforms": "weibo",
        "trend": "rising", "kol_involved": "true", "evidence_link": "https://dash.example/q/1", "action": "done"}
VALUES = {k: v for k, v in FORM.items() if k not in ("evidence_link", "action")} | {"kol_involved": True}
GOALS = {"open": 50.0, "submit": 100.0}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    console = Console(width=max(Console().width, 120))
    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    secret, token = secrets.token_urlsafe(32), "bench-operator-" + uuid.uuid4().hex[:8]
    port = free_port()
    env = {**os.environ, "SOP_HOME": str(ROOT), "SOP_DATABASE_URL": f"sqlite:///{workdir / 'ledger.db'}",
           "SOP_INBOX_DIR": str(workdir / "inbox"), "SOP_API_LAUNCH": "0", "SOP_SECRET": secret,
           "SOP_TOKEN_OPERATOR": token}
    log = open(workdir / "api.log", "wb")  # noqa: SIM115 - closed below
    process = api_process(env, port, workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    links = Links(secret.encode(), SystemClock(), url)
    timings: dict[str, list[float]] = {"page open": [], "page submit": [], "api submit": []}
    load = os.getloadavg()
    try:
        wait_healthy(process, url, 60)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        browser = httpx.Client(base_url=url, timeout=30)

        def start() -> str:
            answer = api.post("/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": f"b-{uuid.uuid4().hex[:10]}"}})
            answer.raise_for_status()
            return answer.json()["run"]

        for i in range(WARM + N):
            keep = i >= WARM
            run = start()
            browser.cookies.clear()
            path = f"/s/{links.step_token('wang-fang', run, 'assess')}"
            began = time.perf_counter()
            page = browser.get(path)
            opened = time.perf_counter()
            assert page.status_code == 200 and "</html>" in page.text, page.text[:300]
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            began_submit = time.perf_counter()
            posted = browser.post(path, data={**FORM, "csrf": csrf})
            submitted = time.perf_counter()
            assert posted.status_code == 303, posted.text[:500]
            other = start()
            began_api = time.perf_counter()
            answer = api.post(f"/v1/runs/{other}/steps/assess",
                              json={"values": VALUES, "evidence": ["https://dash.example/q/1"], "actor": "wang-fang"})
            answered = time.perf_counter()
            assert answer.status_code == 200, answer.text[:500]
            if keep:
                timings["page open"].append((opened - began) * 1000)
                timings["page submit"].append((submitted - began_submit) * 1000)
                timings["api submit"].append((answered - began_api) * 1000)
        for last in (run, other):  # the next assignees really have their step
            steps = {s["step"]: s["state"] for s in api.get(f"/v1/runs/{last}").json()["steps"]}
            assert steps["facts"] == "active" and steps["legal"] == "active", steps
    finally:
        process.terminate()
        process.wait(15)
        log.close()
    table = Table(title=f"step page vs API report, crisis-pr `assess` (n={N} each, interleaved; load {load[0]:.2f})",
                  title_justify="left")
    for column in ("path", "p50 ms", "p99 ms", "max ms", "goal (p99)", "met"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for name, values in timings.items():
        goal = GOALS["open"] if name == "page open" else GOALS["submit"] if name == "page submit" else None
        p99 = pct(values, 99)
        table.add_row(name, f"{statistics.median(values):.1f}", f"{p99:.1f}", f"{max(values):.1f}",
                      f"≤ {goal:g} ms" if goal else "(peer)", "" if goal is None else ("yes" if p99 <= goal else "NO"))
    console.print(table)
    console.print("[dim]open: GET /s/<token> until the whole page is received; submit: the form posted until the "
                  "answer, by when the report is recorded and the next steps (facts, legal) are assigned and their "
                  "pages queued. Same process, same ledger, same engine for both paths.[/]")


if __name__ == "__main__":
    main()
