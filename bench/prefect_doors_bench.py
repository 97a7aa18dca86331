"""What locking the embedded Prefect server costs our clients: CSRF protection on against off.

The server is started as ``sop serve`` starts it (``flows.runtime.serve.server_env``: auth
string, CORS, CSRF), on a free port and a database of its own, once with CSRF protection on
and once off, twice each, one server at a time. Measured: what our launcher does for each
launch or resume — open a Prefect client (``flows.prefect.launcher.prefect_client``) and make
one write (``POST /flows/``, get-or-create by name). With CSRF on, Prefect's client first
asks ``GET /csrf-token`` once per client. Also: an unauthenticated call, to see it refused.

``python -m bench prefect_doors`` (≈1–2 min).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPS = 40
ROUNDS = 2


def say(message: str) -> None:
    print(message, flush=True)


def _server(root: Path, port: int, auth: str, csrf: bool) -> subprocess.Popen:
    from flows.prefect import server as prefect_server
    from flows.runtime.serve import _die_with_parent, healthy, prefect_env, server_env

    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **prefect_env(root, None, auth), **server_env(port, api_url, auth, root / "prefect.db"),
           "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": str(csrf).lower()}
    env.pop("PREFECT_API_URL", None)
    out = open(root / f"server-{port}.log", "ab")  # noqa: SIM115 - the child owns it
    server = subprocess.Popen(prefect_server.command("127.0.0.1", port, as_shipped=True), env=env, stdout=out,
                              stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent)
    began = time.monotonic()
    while not healthy(api_url):
        if server.poll() is not None or time.monotonic() - began > 180:
            raise SystemExit(f"the Prefect server did not start; see {root}")
        time.sleep(0.25)
    return server


def _writes(api_url: str, auth: str) -> list[float]:
    from flows.prefect.launcher import prefect_client

    with prefect_client(api_url, auth) as client:  # warm-up: imports, the flow row
        client.create_flow_from_name("doors-bench")
    spent = []
    for _ in range(REPS):
        began = time.perf_counter()
        with prefect_client(api_url, auth) as client:
            client.create_flow_from_name("doors-bench")
        spent.append((time.perf_counter() - began) * 1000)
    return spent


def main() -> None:
    from tests.support import free_port

    results: dict[str, list[float]] = {"csrf on": [], "csrf off": []}
    refused: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="doors-bench-") as tmp:
        root = Path(tmp)
        auth = "doors-bench-" + os.urandom(8).hex()
        for round_ in range(ROUNDS):
            for label, csrf in (("csrf on", True), ("csrf off", False)):
                port = free_port()
                api_url = f"http://127.0.0.1:{port}/api"
                say(f"round {round_ + 1}: a Prefect server with {label} on 127.0.0.1:{port}")
                server = _server(root, port, auth, csrf)
                try:
                    refused[label] = httpx.get(f"{api_url}/admin/version").status_code
                    results[label].extend(_writes(api_url, auth))
                finally:
                    server.terminate()
                    server.wait(timeout=30)
    say(f"\n{'':10} {'n':>4} {'p50 ms':>8} {'p90 ms':>8}   (a fresh client + one write; unauthenticated GET answers)")
    table = {}
    for label, spent in results.items():
        spent.sort()
        p50, p90 = statistics.median(spent), spent[int(len(spent) * 0.9) - 1]
        table[label] = {"n": len(spent), "p50_ms": round(p50, 1), "p90_ms": round(p90, 1),
                        "unauthenticated": refused[label]}
        say(f"{label:10} {len(spent):>4} {p50:>8.1f} {p90:>8.1f}   {refused[label]}")
    say(f"load average: {os.getloadavg()[0]:.1f}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "prefect_doors.json").write_text(json.dumps({"writes": table, "load": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
