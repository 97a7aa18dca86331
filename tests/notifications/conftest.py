"""Real local receivers for delivery tests: an HTTP endpoint and an SMTP server on 127.0.0.1.

Both start once per session; each test gets them emptied. The HTTP endpoint behaves by path:

- ``/ok/...``             200
- ``/status/<code>/...``  answers that status (``/status/500``)
- ``/slow/<seconds>/...`` waits, then 200 (released at once when the session ends)
- ``/flaky/<n>/<key>``    500 for the first ``n`` requests with that key, then 200
- ``/says/<word>/...``    200, its body the word (Slack's webhooks answer ``ok``)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from flows.language.config import Site
from tests.support import free_port

SMTP_USER = "ops-mailer"


@dataclass
class Received:
    """One request the HTTP receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    done_at: float = 0.0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """The session's HTTP endpoint: ``url("/ok/x")`` is an Apprise ``json://`` URL to it."""

    port: int
    requests: list[Received] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, schema: str = "json", userinfo: str = "") -> str:
        return f"{schema}://{userinfo}127.0.0.1:{self.port}{path}"

    def to(self, prefix: str) -> list[Received]:
        """The requests whose path starts with ``prefix``, in arrival order."""
        return [r for r in self.requests if r.path.startswith(prefix)]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.counters.clear()


def _handler(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            item = Received(self.path, dict(self.headers.items()), body, time.perf_counter())
            with receiver.lock:
                receiver.requests.append(item)
            parts = self.path.split("?")[0].strip("/").split("/")
            status, answer = 200, b"{}"
            if parts[0] == "status":
                status = int(parts[1])
            elif parts[0] == "slow":
                receiver.release.wait(float(parts[1]))
            elif parts[0] == "flaky":
                with receiver.lock:
                    seen = receiver.counters.get(parts[2], 0)
                    receiver.counters[parts[2]] = seen + 1
                status = 500 if seen < int(parts[1]) else 200
            elif parts[0] == "says":
                answer = parts[1].encode()
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the client gave up (a timeout test)
                pass
            item.done_at = time.perf_counter()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(autouse=True)
def _inbox_as_each_test_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """``$SOP_INBOX_DIR`` wins over a delivery's ``inbox_dir`` (docs/notifications.md); the engine's and the web's
    session fixtures set it for their stacks, so a test here that reads its own inbox folder failed whenever one of
    theirs had run first in the same worker. Each test here says where its inbox is."""
    monkeypatch.delenv("SOP_INBOX_DIR", raising=False)


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(port=0)
    ThreadingHTTPServer.request_queue_size = 128  # the default backlog of 5 drops concurrent connects
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, name="http-receiver", daemon=True)
    thread.start()
    yield receiver
    receiver.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def http(http_server: HttpReceiver) -> HttpReceiver:
    """The HTTP receiver, emptied for this test."""
    http_server.clear()
    return http_server


@pytest.fixture(scope="session")
def refused_url() -> str:
    """A json:// URL to a local port where nothing listens (connection refused)."""
    return f"json://127.0.0.1:{free_port()}/nobody-home"




@dataclass
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        raise AssertionError(f"no {content_type} part in the mail")


@dataclass
class SmtpServer:
    """The session's SMTP server; it accepts mail with or without AUTH (``SMTP_USER`` + ``password``)."""

    port: int
    password: str
    mails: list[Mail] = field(default_factory=list)

    def url(self, to: str = "ops@example.com", userinfo: str = "") -> str:
        return f"mailto://{userinfo}127.0.0.1:{self.port}?from=sop@example.com&to={to}"


class _Handler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's naming)
        data = session.auth_data
        login = data.decode() if isinstance(data, bytes) else None
        self.server.mails.append(
            Mail(envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.original_content), login)
        )
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port(), password="p@ss/w0rd:secret!")

    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == SMTP_USER
            and data.password.decode() == server.password
        )
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    controller = Controller(
        _Handler(server),
        hostname="127.0.0.1",
        port=server.port,
        authenticator=authenticate,
        auth_required=False,
        auth_require_tls=False,
    )
    controller.start()
    yield server
    controller.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    """The SMTP server, emptied for this test."""
    smtp_server.mails.clear()
    return smtp_server


@pytest.fixture
def make_site() -> Any:
    """``make_site({"li-wei": [url, ...]}, roles={...}, channels={...})``: a validated Site for a test."""

    def build(
        people: dict[str, list[str]],
        roles: dict[str, dict[str, Any]] | None = None,
        channels: dict[str, list[str]] | None = None,
        timezones: dict[str, str] | None = None,
    ) -> Site:
        timezones = timezones or {}
        return Site.model_validate(
            {
                "people": {
                    pid: {
                        "name": pid.replace("-", " ").title(),
                        "contacts": urls,
                        "timezone": timezones.get(pid, "UTC"),
                    }
                    for pid, urls in people.items()
                },
                "roles": roles or {},
                "channels": {cid: {"urls": urls} for cid, urls in (channels or {}).items()},
                "settings": {"timezone": "Asia/Shanghai"},
            }
        )

    return build
