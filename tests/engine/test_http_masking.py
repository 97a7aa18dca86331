"""An http step's failure text names the endpoint, never the credentials the site keeps in ``config.*`` URLs.

The text is recorded in the ledger (``step_attempt_failed``, ``step_failed``), shown by Prefect
(the task's exception) and sent in pages; it is masked as the notifications mask theirs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flows.language.steps import KINDS, StepContext, StepFailed
from flows.language.steps.http import HttpStep

PASSWORD = "s3cr3t-Pa55word"
TOKEN = "tok_9f8e7d6c5b4a39281706"


class Refuses(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the handler's name in http.server
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b"busy")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy_gateway() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers 503."""
    server = HTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url_template: str, gateway: str) -> str:
    """Run an http step whose URL comes from ``config.gateway``; its failure text."""
    step = HttpStep.model_validate({"id": "call", "kind": "http", "request": {"url": url_template}, "timeout": "2s"})
    config = {"gateway": f"http://ops:{PASSWORD}@{gateway}/admin?token={TOKEN}&region=eu"}
    with pytest.raises(StepFailed) as failed:
        KINDS["http"].execute(step, StepContext(variables={"config": config, "inputs": {}}, run_id="r1"))  # type: ignore[misc]
    return str(failed.value)


@pytest.mark.parametrize("where", ["answered", "refused"])
def test_an_http_steps_failure_masks_the_credentials_of_config_urls(where: str, busy_gateway: str) -> None:
    gateway = busy_gateway if where == "answered" else f"127.0.0.1:{closed_port()}"
    text = call("{{ config.gateway }}/limits", gateway)
    assert PASSWORD not in text and TOKEN not in text and "ops:" not in text
    assert f"http://****:****@{gateway}/admin" in text  # still says which endpoint
    assert ("answered HTTP 503" if where == "answered" else "failed:") in text
