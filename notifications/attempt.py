"""One try at one destination through Apprise: prepare the plugin, send, say what happened.

Apprise answers a send with a bool; the reason for a failure is only in its log. While an
attempt runs, the lines Apprise logs on this thread are collected (redacted) to become the
attempt's error text, and kept out of the application's logs (the delivery stage logs one
line per result instead). Apprise lines from anyone else pass through as before.

urllib3's DEBUG lines (they quote request URLs with their query tokens) are dropped during
our attempts for the same reason. A per-attempt ``timeout`` is applied as Apprise's connect
and read timeouts (``cto``/``rto``) unless the URL sets its own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import apprise

import notifications.inbox  # noqa: F401  (registers inbox://)
from notifications.markup import for_channel
from notifications.masking import redact
from notifications.message import Message

APPRISE_LOGGER = "apprise"
#: loggers that quote request URLs (query tokens included) at DEBUG; silenced during our attempts
QUIET_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.response",
)
ASSET = apprise.AppriseAsset(app_id="sops-as-code", app_desc="SOPs as code", async_mode=False)
_MAX_ERROR = 400
#: the one useful phrase in a long requests/urllib3 exception text
_REASONS = (
    (re.compile(r"Failed to establish a new connection: (\[Errno -?\d+\] [^\"')]+)"), r"\1"),
    (re.compile(r"Read timed out\. \(read timeout=([\d.]+)\)"), r"no answer within \1s (read timeout)"),
    (re.compile(r"timed out\. \(connect timeout=([\d.]+)\)"), r"no connection within \1s (connect timeout)"),
    (re.compile(r"(NameResolutionError|Name or service not known|nodename nor servname)"), "host name not found"),
)


@dataclass(frozen=True)
class Outcome:
    """What one attempt did: ``ok``, the redacted ``error`` text when not, and its ``latency`` in seconds."""

    ok: bool
    error: str | None
    latency: float


class _AttemptLogs(logging.Filter):
    """A logger-level filter: during an attempt on this thread, Apprise's records are collected
    (for the error text) and library records that may quote a URL are dropped."""

    def __init__(self, apprise_level: int):
        super().__init__()
        self.local = threading.local()
        self.apprise_level = apprise_level  # what the application had set (NOTSET: inherit)

    def filter(self, record: logging.LogRecord) -> bool:
        lines: list[tuple[int, str]] | None = getattr(self.local, "lines", None)
        if lines is None:  # not one of our attempts: behave as before
            if record.name != APPRISE_LOGGER:
                return True
            return record.levelno >= (self.apprise_level or logging.getLogger().getEffectiveLevel())
        if record.name == APPRISE_LOGGER:
            lines.append((record.levelno, record.getMessage()))
        return False

    @contextmanager
    def collect(self) -> Iterator[list[tuple[int, str]]]:
        lines: list[tuple[int, str]] = []
        self.local.lines = lines
        try:
            yield lines
        finally:
            self.local.lines = None


def _install() -> _AttemptLogs:
    apprise_logger = logging.getLogger(APPRISE_LOGGER)
    for existing in apprise_logger.filters:
        if isinstance(existing, _AttemptLogs):
            return existing
    capture = _AttemptLogs(apprise_logger.level)
    for name in (APPRISE_LOGGER, *QUIET_LOGGERS):
        logging.getLogger(name).addFilter(capture)
    # Apprise says why a send failed only at DEBUG ("Socket Exception: ... Connection refused");
    # the filter keeps those records to our attempts and out of everyone's logs.
    apprise_logger.setLevel(logging.DEBUG)
    return capture


_CAPTURE = _install()


def prepare(url: str, timeout: float) -> tuple[Any | None, str | None]:
    """The Apprise plugin for an expanded URL with the timeout applied, or (None, why not)."""
    with _CAPTURE.collect() as lines:
        try:
            plugin = apprise.Apprise.instantiate(url, asset=ASSET, suppress_exceptions=True)
        except Exception as exc:  # a plugin's constructor may raise anything
            plugin = None
            lines.append((logging.ERROR, str(exc)))
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else url
        detail = error_text(lines, url)
        return None, f"not a usable Apprise URL (schema `{redact(scheme, url)}`): {detail}"
    options = parse_qs(url.partition("?")[2])
    if "cto" not in options:
        plugin.socket_connect_timeout = timeout
    if "rto" not in options:
        plugin.socket_read_timeout = timeout
    return plugin, None


def send(plugin: Any, url: str, message: Message) -> Outcome:
    """Send ``message`` once through a prepared plugin; never raises. The plugin is handed the message as
    :func:`notifications.markup.for_channel` makes it for its kind of channel: no value in it becomes a
    disguised link, an image or HTML."""
    started = time.perf_counter()
    sender = None
    with _CAPTURE.collect() as lines:
        try:
            sender = _sender()
            sender.add(plugin)
            handed = for_channel(plugin, message.title, message.body or message.title, message.phone_body)
            ok = bool(
                sender.notify(
                    body=handed.body,
                    title=handed.title,
                    notify_type=apprise.NotifyType(message.notify_type),
                    body_format=handed.body_format,
                )
            )
        except Exception as exc:  # Apprise or a plugin failing in a way it does not catch
            ok = False
            lines.append((logging.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            if sender is not None:
                sender.clear()  # the plugin is not kept: the next attempt on this thread may be anyone's
    latency = time.perf_counter() - started
    return Outcome(ok=ok, error=None if ok else error_text(lines, url), latency=latency)


_SENDERS = threading.local()


def _sender() -> apprise.Apprise:
    """This thread's Apprise object, empty (a new one reads its locale's translations from disk: made for every
    attempt, it was a good part of a pager's CPU; docs/benchmarks.md)."""
    sender = getattr(_SENDERS, "apprise", None)
    if sender is None:
        sender = _SENDERS.apprise = apprise.Apprise(asset=ASSET)
    return sender


def error_text(lines: list[tuple[int, str]], url: str) -> str:
    """Apprise's warnings plus its last exception detail, redacted and kept short."""
    warnings = [text.strip() for level, text in lines if level >= logging.WARNING]
    details = [text.strip() for level, text in lines if level < logging.WARNING and "Exception" in text]
    text = "; ".join(dict.fromkeys(warnings)) or "the destination did not accept the message"
    if details:
        text = f"{text} ({reason(details[-1].split('Exception:', 1)[-1].strip())})"
    text = redact(" ".join(text.split()), url)
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def reason(detail: str) -> str:
    """The short cause inside an exception text (``[Errno 111] Connection refused``), else the text."""
    for pattern, replacement in _REASONS:
        found = pattern.search(detail)
        if found:
            return found.expand(replacement).strip()
    return detail
