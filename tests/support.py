"""Helpers shared by the tests and the benchmarks: free ports, a real Alertmanager process."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

#: ports :func:`free_port` gave this process: each is given once (two processes started back to back were given the
#: same port, free until the first bound it: the second then failed to bind)
_GIVEN: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now, and not given before by this process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


class Alertmanager:
    """Debian's Alertmanager on 127.0.0.1: one webhook receiver (bearer token), no grouping delay,
    clustering off; ``post`` sends alerts to its v2 API as Prometheus does."""

    def __init__(self, binary: str, workdir: Path, webhook: str, token: str, *, group_interval: str = "1s",
                 repeat_interval: str = "2s", send_resolved: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "alertmanager.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "route": {"receiver": "sop", "group_by": ["..."], "group_wait": "0s",
                      "group_interval": group_interval, "repeat_interval": repeat_interval},
            "receivers": [{"name": "sop", "webhook_configs": [{
                "url": webhook, "send_resolved": send_resolved,
                "http_config": {"authorization": {"type": "Bearer", "credentials": token}}}]}],
        }))
        self.log_path = workdir / "alertmanager.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address=", f"--storage.path={workdir / 'data'}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not self.ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Alertmanager did not answer on {self.url} within 15 s; see {self.log_path}")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Alertmanager exited with code {self.process.returncode}; see {self.log_path}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, labels: dict[str, str], *, resolved: bool = False) -> None:
        """Send an alert as Prometheus does (``POST /api/v2/alerts``); resolved = ends now."""
        now = datetime.now(UTC).isoformat()
        alert: dict[str, Any] = {"labels": labels, "annotations": {"summary": "5xx above 5% for 5m"},
                                 "startsAt": now, "generatorURL": "http://prometheus.local/graph"}
        if resolved:
            alert["endsAt"] = now
        self.http.post("/api/v2/alerts", json=[alert]).raise_for_status()

    def stop(self) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def children_of(pid: int) -> dict[int, str]:
    """The direct children of ``pid``: their pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def api_process(env: dict[str, str], port: int, cwd: Path, **streams: Any) -> subprocess.Popen:
    """The HTTP API in a process of its own, as a team runs it (uvicorn and the app factory)."""
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "flows.runtime.web:from_environment", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=cwd, **streams)


def wait_healthy(process: subprocess.Popen, url: str, timeout: float) -> None:
    """Wait until the API at ``url`` answers ``/healthz``; RuntimeError (with its stderr when piped) if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            said = process.stderr.read().decode()[-2000:] if process.stderr else ""
            raise RuntimeError(f"the API process at {url} exited with code {process.returncode}: {said}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API at {url} did not answer within {timeout:g} s")
        time.sleep(0.1)
