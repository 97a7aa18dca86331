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
