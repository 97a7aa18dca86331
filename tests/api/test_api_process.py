"""The API in a process of its own, as docs/team.md runs it (uvicorn, the app factory, its access log on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import free_port, wait_healthy

COMMAND = [sys.executable, "-m", "uvicorn", "--factory", "flows.runtime.web:from_environment", "--host", "127.0.0.1"]


def _env(repo_root: Path, tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOP_TOKEN_") and not k.startswith("SOP_HMAC_")}
    return {**env, "SOP_HOME": str(repo_root), "SOP_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SOP_INBOX_DIR": str(tmp_path / "inbox"), "SOP_API_LAUNCH": "0", **more}


def test_the_access_log_keeps_no_link_secret_and_our_own_lines_are_logged(repo_root: Path, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen([*COMMAND, "--port", str(port)], env=_env(repo_root, tmp_path), cwd=tmp_path,
                               stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(api, f"http://127.0.0.1:{port}", 60)
            step = "eyJwIjoid2FuZy1mYW5nIiwiciI6IjIzMGVjY2I1MTUifQ.c2VjcmV0LXBhcnQ"
            assert httpx.get(f"http://127.0.0.1:{port}/s/{step}").status_code == 403
            httpx.get(f"http://127.0.0.1:{port}/sign-in/{step}x?next=/")
        finally:
            api.terminate()
            api.wait(20)
    text = log.read_text()
    assert '"GET /s/… HTTP/1.1" 403' in text and '"GET /sign-in/…?next=/ HTTP/1.1"' in text, text[-2000:]
    assert step not in text  # a live link in journald is anyone's who reads it
    assert "event=api_token_inactive token=ops-console" in text  # was never shown: uvicorn sets up its own loggers


def test_a_token_secret_refused_stops_it_with_one_line_not_a_traceback(repo_root: Path, tmp_path: Path) -> None:
    env = _env(repo_root, tmp_path, SOP_TOKEN_OPERATOR="short")
    done = subprocess.run([*COMMAND, "--port", str(free_port())], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "error: the API cannot start: " in done.stderr and "SOP_TOKEN_OPERATOR" in done.stderr


def test_our_lines_follow_uvicorns_log_level(repo_root: Path, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen([*COMMAND, "--port", str(port), "--log-level", "warning"],
                               env=_env(repo_root, tmp_path), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(api, f"http://127.0.0.1:{port}", 60)
        finally:
            api.terminate()
            api.wait(20)
    text = log.read_text()
    assert "event=api_token_inactive" not in text  # INFO: below the asked level (a line per alert at 1,000/s)
    assert "event=api_no_tokens" in text  # a WARNING still shows


def _documented_api(port: int, bound: str) -> list[str]:
    """docs/team.md's API command on this machine: loopback, ``port``, and its stop bound set to ``bound`` s."""
    from bench.team_page import documented_processes

    argv = list(documented_processes()["API"].argv)
    assert "--timeout-graceful-shutdown" in argv, f"docs/team.md's API command sets no stop bound: {argv}"
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--timeout-graceful-shutdown", bound)):
        argv[argv.index(flag) + 1] = value
    return [sys.executable, "-m", *argv]


def test_an_api_told_to_stop_cuts_the_requests_still_in_flight_at_its_bound_saying_so(repo_root: Path,
                                                                                      tmp_path: Path) -> None:
    """docs/team.md's API command, its stop bound (10 s there) set to 2 s: one client sent half of a run's body and
    went quiet; another's run start waits for the ledger, which a long write holds. SIGTERM: the process stops
    within the bound and its shutdown, not when the clients give up (nor at systemd's kill 60 s on), and ends by
    the SIGTERM as before. Its log says, one line per request, that the stop cut it, with no traceback; the
    waiting client is answered 503, told its run may have been recorded."""
    import signal
    import socket
    import sqlite3
    import threading
    import time

    from flows.ledger import Ledger

    port, log, token = free_port(), tmp_path / "api.log", os.urandom(16).hex()
    Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").migrate()
    answers: list[httpx.Response] = []
    with log.open("wb") as out:
        api = subprocess.Popen(_documented_api(port, "2"), env=_env(repo_root, tmp_path, SOP_TOKEN_OPERATOR=token),
                               cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        quiet = socket.socket()
        held = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
        try:
            wait_healthy(api, f"http://127.0.0.1:{port}", 60)
            quiet.connect(("127.0.0.1", port))
            quiet.sendall(b'POST /v1/runs HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n'
                          b'Content-Length: 60\r\n\r\n{"sop": "crisis-pr",')
            held.execute("BEGIN EXCLUSIVE")  # a long write of another process holds the ledger
            waiting = threading.Thread(target=lambda: answers.append(httpx.post(
                f"http://127.0.0.1:{port}/v1/runs", json={"sop": "crisis-pr", "inputs": {"brand": "acme"}},
                headers={"Authorization": f"Bearer {token}"}, timeout=60)))
            waiting.start()
            time.sleep(1.0)  # both requests are in flight
            signalled = time.monotonic()
            api.send_signal(signal.SIGTERM)
            api.wait(30)
            took = time.monotonic() - signalled
            waiting.join(10)
        finally:
            held.close()
            quiet.close()
            if api.poll() is None:
                api.kill()
                api.wait()
    text = log.read_text()
    assert api.returncode == -signal.SIGTERM and 2.0 <= took < 6.0, f"stopped in {took:.1f} s:\n{text[-3000:]}"
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]
    cut = [line for line in text.splitlines() if "event=request_cut_by_stop" in line]
    assert len(cut) == 2 and all("method=POST path=/v1/runs" in line for line in cut), text[-3000:]
    assert [a.status_code for a in answers] == [503] and "may or may not have been recorded" in answers[0].text
    print(f"API with two requests in flight stopped {took:.1f} s after SIGTERM (bound 2 s)")


def test_sighup_leaves_an_api_process_serving_and_says_to_restart_it(repo_root: Path, tmp_path: Path) -> None:
    """An admin sends the API process SIGHUP, as the other processes reload on it: it goes on answering, says in one
    line that it does not reload and how to restart it, and SIGTERM still stops it cleanly. (By Python's default it
    died at once, without its shutdown, and systemd, which counts SIGHUP a clean end, left it down.)"""
    import signal
    import time

    port, log = free_port(), tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(_documented_api(port, "2"), env=_env(repo_root, tmp_path), cwd=tmp_path, stdout=out,
                               stderr=subprocess.STDOUT)
        try:
            wait_healthy(api, f"http://127.0.0.1:{port}", 60)
            api.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "SIGHUP" not in log.read_text() and api.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert api.poll() is None, f"SIGHUP ended it ({api.returncode}):\n{log.read_text()[-2000:]}"
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
            api.send_signal(signal.SIGTERM)
            api.wait(30)
        finally:
            if api.poll() is None:
                api.kill()
                api.wait()
    text = log.read_text()
    said = [line for line in text.splitlines() if "SIGHUP" in line]
    assert said == ["api: SIGHUP ignored: an API process does not reload sops/ and config/; restart it to load them "
                    "(one at a time behind the balancer: systemctl restart sop-api@PORT)"], text[-2000:]
    assert api.returncode == -signal.SIGTERM and "Application shutdown complete" in text, text[-2000:]
