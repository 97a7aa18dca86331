"""The delivery pipeline for one recipient, in the manner of Alertmanager's notify stages:

    expand (${VAR} → URL) → locate inbox → prepare (Apprise plugin, timeout)
    → retry (attempts, backoff) → fall back (next contact) → record (one result, one log line)

Each stage is a function of its own; :func:`deliver_lane` composes them. Nothing here
raises to the caller: every problem (a missing variable, a bad URL, a refused connection,
a template that fails) becomes a failed :class:`DeliveryResult` with a text a person can
act on, and no secret in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flows.language.config import expand_env, unset_reason
from flows.logfmt import kv
from notifications import attempt
from notifications.addressing import Recipient
from notifications.inbox import SCHEMA as INBOX_SCHEMA
from notifications.inbox import inbox_dir as resolve_inbox_dir
from notifications.masking import mask_template, mask_url
from notifications.message import Message

log = logging.getLogger("notifications.delivery")

#: a message, or a function rendering one for each recipient (``notifications.render_for``)
MessageOrFactory = Message | Callable[[Recipient], Message]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock of delivery records."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Policy:
    """How hard to try: per-attempt ``timeout`` (s), ``retries`` after the first attempt, and the
    ``backoff`` before retry n (``backoff * 2**(n-1)``, at most ``max_backoff``)."""

    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 30.0
    inbox_dir: Path | None = None

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return min(self.max_backoff, self.backoff * 2 ** (retry - 1))


@dataclass(frozen=True)
class DeliveryResult:
    """What happened at one destination: the engine records one of these per destination tried.

    ``destination`` is masked; ``contact`` is its 1-based place in the recipient's list;
    ``attempts`` is 0 when nothing was sent (a missing variable, a bad URL, a failed
    render); ``latency`` covers all attempts and backoff, in seconds.
    """

    recipient: str
    recipient_kind: str
    destination: str
    ok: bool
    error: str | None
    attempts: int
    latency: float
    at: datetime
    contact: int = 1
    kind: str = "message"
    via: str | None = None

    @property
    def status(self) -> str:
        """``ok`` or ``failed``."""
        return "ok" if self.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``at`` as ISO 8601, ``status`` added) for the ledger or an API."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["status"] = self.status
        return data


def lane_key(result: DeliveryResult) -> tuple[str, str, int]:
    """The lane a result belongs to: a person's contacts are one lane, each channel URL is a
    lane of its own (see :func:`plan`). ``(recipient kind, recipient, contact or 0)``."""
    return (result.recipient_kind, result.recipient, 0 if result.recipient_kind == "person" else result.contact)


def lane_outcomes(results: Iterable[DeliveryResult]) -> dict[tuple[str, str, int], bool]:
    """Whether each lane of a submission got through (a person: when any contact took the
    message), lanes in the order of the results."""
    out: dict[tuple[str, str, int], bool] = {}
    for r in results:
        key = lane_key(r)
        out[key] = out.get(key, False) or r.ok
    return out


@dataclass(frozen=True)
class Lane:
    """URLs delivered one after the other for one recipient (a person's contacts, or one channel URL)."""

    recipient: Recipient
    urls: tuple[tuple[int, str], ...]  # (1-based contact number, URL template)
    fallback: bool = True


def plan(recipients: list[Recipient]) -> list[Lane]:
    """Lanes that may run side by side: one per person (contacts in order), one per channel URL."""
    lanes: list[Lane] = []
    for r in recipients:
        numbered = tuple(enumerate(r.urls, start=1)) or ((1, ""),)
        if r.fallback:
            lanes.append(Lane(r, numbered, True))
        else:
            lanes.extend(Lane(r, (item,), False) for item in numbered)
    return lanes


# --- stages ---------------------------------------------------------------------------------


def expand(
    template: str, recipient: Recipient, contact: int, env: Mapping[str, str] | None
) -> tuple[str | None, str | None]:
    """Stage 1: the URL with ``${VAR}`` expanded from the environment, or (None, why not)."""
    if not template.strip():
        return None, f"{recipient.kind} `{recipient.id}` has no contact URL to deliver to (add one in config/)"
    try:
        return expand_env(template, env), None
    except KeyError as exc:
        name = exc.args[0]
        return None, (
            f"environment variable `{name}` {unset_reason(name, env)} ({recipient.kind} `{recipient.id}`, contact {contact}); "
            f"set it, or write ${{{name}:-default}} in config/"
        )


def locate_inbox(url: str, policy: Policy, env: Mapping[str, str] | None) -> str:
    """Stage 2: an ``inbox://`` URL without ``?dir=`` gets the site's inbox folder."""
    if not url.startswith(f"{INBOX_SCHEMA}://") or "dir=" in url.partition("?")[2]:
        return url
    folder = resolve_inbox_dir(policy.inbox_dir, env)
    return url + ("&" if "?" in url else "?") + "dir=" + quote(str(folder), safe="")


def with_retries(
    send_once: Callable[[], attempt.Outcome],
    policy: Policy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, attempt.Outcome], None] | None = None,
) -> tuple[attempt.Outcome, int]:
    """Stage 4: call ``send_once`` until it succeeds or ``1 + retries`` attempts are spent."""
    outcome = send_once()
    tries = 1
    while not outcome.ok and tries <= policy.retries:
        if on_retry is not None:
            on_retry(tries, outcome)
        sleep(policy.delay(tries))
        outcome = send_once()
        tries += 1
    return outcome, tries


def deliver_destination(
    message: Message,
    recipient: Recipient,
    contact: int,
    template: str,
    policy: Policy,
    env: Mapping[str, str] | None,
    clock: Clock,
) -> DeliveryResult:
    """Stages 1–4 for one destination, as one result."""
    started = time.perf_counter()
    url, problem = expand(template, recipient, contact, env)
    destination = mask_url(url) if url is not None else (mask_template(template) if template.strip() else "—")
    tries, ok, error = 0, False, problem
    if url is not None:
        url = locate_inbox(url, policy, env)
        plugin, problem = attempt.prepare(url, policy.timeout)
        error = problem
        if plugin is not None:

            def retrying(n: int, outcome: attempt.Outcome) -> None:
                log.debug(
                    kv(
                        "notification retry",
                        kind=message.kind,
                        recipient=recipient.id,
                        destination=destination,
                        attempt=n,
                        error=outcome.error,
                    )
                )

            plugins = iter([plugin])

            def send_once() -> attempt.Outcome:
                # A fresh plugin per attempt: Apprise throttles a reused one (5.5 s between two sends
                # by e-mail and most plugins); our backoff paces the retries instead.
                current = next(plugins, None) or attempt.prepare(url, policy.timeout)[0] or plugin
                return attempt.send(current, url, message)

            outcome, tries = with_retries(send_once, policy, on_retry=retrying)
            ok, error = outcome.ok, outcome.error
    return DeliveryResult(
        recipient=recipient.id,
        recipient_kind=recipient.kind,
        destination=destination,
        ok=ok,
        error=error,
        attempts=tries,
        latency=time.perf_counter() - started,
        at=clock(),
        contact=contact,
        kind=message.kind,
        via=recipient.via,
    )


def deliver_lane(
    message: MessageOrFactory, lane: Lane, policy: Policy, env: Mapping[str, str] | None = None, clock: Clock = utc_now
) -> list[DeliveryResult]:
    """Stages 5–6: deliver a lane's destinations in order (stop at the first success when the
    lane falls back), log one line per result, and return the results. Never raises."""
    recipient = lane.recipient
    results: list[DeliveryResult] = []
    try:
        resolved = message(recipient) if callable(message) else message
    except Exception as exc:  # a render failure is a failed delivery, not a crash
        contact, template = lane.urls[0]
        result = DeliveryResult(
            recipient=recipient.id,
            recipient_kind=recipient.kind,
            destination=mask_template(template) if template else "—",
            ok=False,
            error=f"could not render the message: {exc}",
            attempts=0,
            latency=0.0,
            at=clock(),
            contact=contact,
            kind="message",
            via=recipient.via,
        )
        record(result)
        return [result]
    for contact, template in lane.urls:
        try:
            result = deliver_destination(resolved, recipient, contact, template, policy, env, clock)
        except Exception as exc:  # a bug of ours or Apprise's must not reach the engine
            result = DeliveryResult(
                recipient=recipient.id,
                recipient_kind=recipient.kind,
                destination=mask_template(template),
                ok=False,
                error=f"internal error while delivering: {type(exc).__name__}",
                attempts=0,
                latency=0.0,
                at=clock(),
                contact=contact,
                kind=resolved.kind,
                via=recipient.via,
            )
        record(result)
        results.append(result)
        if result.ok and lane.fallback:
            break
    return results


def record(result: DeliveryResult) -> None:
    """Stage 6: one structured log line per destination (the engine writes the ledger itself)."""
    fields = dict(
        kind=result.kind,
        recipient=result.recipient,
        destination=result.destination,
        contact=result.contact,
        attempts=result.attempts,
        latency_ms=round(result.latency * 1000),
    )
    if result.ok:
        log.info(kv("notification delivered", **fields))
    else:
        log.warning(kv("notification failed", **fields, error=result.error))
