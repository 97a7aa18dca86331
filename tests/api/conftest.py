"""The HTTP API, really served: uvicorn on a free 127.0.0.1 port, the seed library, a fresh ledger (each database).

One server per session (starting one is quick, but the ledger is worth sharing): tests
keep apart by using their own dedup keys (a fresh ``service`` / ``brand`` label each).
Tokens come from a dict handed to the app, never from the process environment.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from flows.api import create_app
from flows.engine.transitions import Engine
from flows.language.library import Library, load_library
from flows.ledger import Ledger
from tests.conftest import TestDatabase

#: the roles of the tokens in config/tokens.yaml, by token name
TOKEN_ROLES = {
    "ops-console": "operator",
    "sre-oncall-phone": "responder",
    "audit-readonly": "auditor",
    "alertmanager": "monitor",
    "grafana": "monitor",
}
TOKEN_ENV = {
    "ops-console": "SOP_TOKEN_OPERATOR",
    "sre-oncall-phone": "SOP_TOKEN_RESPONDER",
    "audit-readonly": "SOP_TOKEN_AUDITOR",
    "alertmanager": "SOP_TOKEN_MONITOR",
    "grafana": "SOP_TOKEN_GRAFANA",
}




def unique(prefix: str = "t") -> str:
    """A fresh dedup key for one test."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ServedApp:
    """A FastAPI app served by uvicorn in a thread of this process."""

    def __init__(self, app: Any, port: int = 0):
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving, then finish the app's queued intake and launches as a stopping process does (and let its
        intake thread go: left running, each app of the session kept one)."""
        self.server.should_exit = True
        self.thread.join(10)
        if hasattr(self.app.state, "intake_thread"):
            from flows.api.app import close

            close(self.app)


@dataclass
class Api:
    """The served API, its engine, and a client per token."""

    url: str
    engine: Engine
    secrets: dict[str, str]
    hmac_secret: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def grafana(self, body: bytes, stamp: str | None = None) -> dict[str, str]:
        """The headers Grafana's contact point sends with ``body``: the grafana token (the one whose `sources` name
        grafana) and its HMAC signature over ``<stamp>:<body>`` (``stamp``: now); post them with ``as_(None)``."""
        stamp = stamp or str(int(time.time()))
        signature = hmac.new(self.hmac_secret.encode(), stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return {"Authorization": f"Bearer {self.secrets['grafana']}", "X-Grafana-Alerting-Signature": signature,
                "X-Grafana-Alerting-Signature-Timestamp": stamp, "Content-Type": "application/json"}

    def as_(self, token: str | None, secret: str | None = None) -> httpx.Client:
        """A client sending ``token``'s secret (or ``secret``, or no Authorization header at all)."""
        key = f"{token}:{secret}"
        if key not in self.clients:
            headers = {}
            if token is not None or secret is not None:
                headers["Authorization"] = f"Bearer {secret or self.secrets[token]}"  # type: ignore[index]
            self.clients[key] = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        return self.clients[key]


@pytest.fixture(scope="session")
def library(repo_root: Path) -> Library:
    return load_library(repo_root)


@pytest.fixture(scope="session")
def token_env() -> dict[str, str]:
    """Secrets for every token of config/tokens.yaml (and the Grafana HMAC secret)."""
    env = {var: f"{name}-{secrets.token_hex(8)}" for name, var in TOKEN_ENV.items()}
    env["SOP_HMAC_GRAFANA"] = "grafana-hmac-" + secrets.token_hex(8)
    return env


@pytest.fixture(scope="session")
def api(library: Library, token_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
        database: TestDatabase) -> Iterator[Api]:
    ledger = Ledger(database.url_at(tmp_path_factory.mktemp("api") / "ledger.db"))
    ledger.migrate()
    engine = Engine(library, ledger)
    served = ServedApp(create_app(engine, env=token_env))
    api = Api(
        served.url, engine, {name: token_env[var] for name, var in TOKEN_ENV.items()}, token_env["SOP_HMAC_GRAFANA"]
    )
    yield api
    for client in api.clients.values():
        client.close()
    served.stop()
    ledger.dispose()
