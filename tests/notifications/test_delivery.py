"""Delivery to a real local HTTP endpoint: payloads, retries, fallback, timeouts, results, secrets."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from notifications import Message, Recipient, deliver, recipients
from tests.notifications.conftest import HttpReceiver

MESSAGE = Message(
    title="[P1] Assigned to you: Assess scope",
    body="**Do it** now:\n\n`sop done r1 assess`",
    notify_type="failure",
    priority=1,
    kind="assigned",
)
FAST = {"timeout": 1.0, "backoff": 0.01}


def person(*urls: str, pid: str = "wang-fang") -> Recipient:
    return Recipient(id=pid, name=pid.title(), kind="person", urls=urls)


def test_the_endpoint_gets_exactly_the_rendered_message(http: HttpReceiver) -> None:
    [result] = deliver(MESSAGE, [person(http.url("/ok/wang"))], **FAST)
    [request] = http.to("/ok/wang")
    assert request.json == {
        "version": "1.0",
        "title": "[P1] Assigned to you: Assess scope",
        "message": "**Do it** now:\n\n`sop done r1 assess`",
        "attachments": [],
        "type": "failure",
    }
    assert request.headers["Content-Type"] == "application/json"
    assert (result.ok, result.status, result.error, result.attempts, result.contact) == (True, "ok", None, 1, 1)
    assert (result.recipient, result.recipient_kind, result.kind) == ("wang-fang", "person", "assigned")
    assert result.destination == http.url("/ok/wang")
    assert 0 < result.latency < 1
    assert result.to_dict()["status"] == "ok" and result.to_dict()["at"].endswith("+00:00")


def test_an_http_500_is_retried_then_the_next_contact_gets_it(http: HttpReceiver) -> None:
    results = deliver(
        MESSAGE, [person(http.url("/status/500/a"), http.url("/ok/b"), http.url("/ok/c"))], retries=2, **FAST
    )
    assert len(http.to("/status/500/a")) == 3  # first attempt + 2 retries
    assert len(http.to("/ok/b")) == 1
    assert http.to("/ok/c") == []  # the first working contact is enough
    failed, delivered = results
    assert (failed.ok, failed.attempts, failed.contact) == (False, 3, 1)
    assert "error=500" in failed.error
    assert (delivered.ok, delivered.attempts, delivered.contact) == (True, 1, 2)


def test_a_flaky_endpoint_succeeds_on_a_retry_after_a_backoff(http: HttpReceiver) -> None:
    [result] = deliver(MESSAGE, [person(http.url("/flaky/2/k1"))], retries=3, timeout=1.0, backoff=0.05)
    assert (result.ok, result.attempts) == (True, 3)
    assert len(http.to("/flaky/2/k1")) == 3
    assert result.latency >= 0.05 + 0.10  # waited backoff, then twice the backoff


def test_connection_refused_is_retried_and_falls_back(http: HttpReceiver, refused_url: str) -> None:
    refused, delivered = deliver(MESSAGE, [person(refused_url, http.url("/ok/second"))], retries=1, **FAST)
    assert (refused.ok, refused.attempts) == (False, 2)
    assert "Connection refused" in refused.error
    assert (delivered.ok, delivered.contact) == (True, 2)


def test_when_every_contact_fails_each_is_recorded_and_nothing_raises(http: HttpReceiver, refused_url: str) -> None:
    results = deliver(MESSAGE, [person(refused_url, http.url("/status/503/x"))], retries=0, **FAST)
    assert [(r.ok, r.contact, r.attempts) for r in results] == [(False, 1, 1), (False, 2, 1)]
    assert "error=503" in results[1].error


def test_a_slow_endpoint_times_out_without_holding_up_the_others(http: HttpReceiver) -> None:
    slow = person(http.url("/slow/5/a"), pid="slow-one")
    fast = person(http.url("/ok/fast"), pid="fast-one")
    timed_out, delivered = deliver(MESSAGE, [slow, fast], timeout=0.6, retries=0, backoff=0.01)
    assert (timed_out.recipient, timed_out.ok) == ("slow-one", False)
    assert "no answer within 0.6s" in timed_out.error
    assert 0.55 <= timed_out.latency < 2.0  # the timeout, not the endpoint's 5 s
    assert (delivered.recipient, delivered.ok) == ("fast-one", True)
    assert delivered.latency < 0.45  # it did not wait for the slow one's timeout
    [fast_request], [slow_request] = http.to("/ok/fast"), http.to("/slow/5/a")
    assert fast_request.done_at < slow_request.at + 0.45


def test_a_missing_environment_variable_fails_that_contact_clearly(http: HttpReceiver, monkeypatch: Any) -> None:
    monkeypatch.delenv("WANG_FANG_URL", raising=False)
    missing, delivered = deliver(MESSAGE, [person("${WANG_FANG_URL}", http.url("/ok/after-missing"))], **FAST)
    assert (missing.ok, missing.attempts, missing.destination) == (False, 0, "${WANG_FANG_URL}")
    assert missing.error == (
        "environment variable `WANG_FANG_URL` is not set (person `wang-fang`, contact 1); "
        "set it, or write ${WANG_FANG_URL:-default} in config/"
    )
    assert delivered.ok


def test_a_url_apprise_cannot_use_is_a_failed_contact(http: HttpReceiver) -> None:
    bad, delivered = deliver(MESSAGE, [person("nosuchschema://x", http.url("/ok/after-bad"))], **FAST)
    assert (bad.ok, bad.attempts) == (False, 0)
    assert "not a usable Apprise URL (schema `nosuchschema`)" in bad.error
    assert delivered.ok


def test_secrets_from_the_environment_are_used_but_never_shown(
    http: HttpReceiver, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HOOK_PASSWORD", "hunter2-hunter2")
    monkeypatch.setenv("HOOK_KEY", "k3y-0f-the-hook")
    caplog.set_level(logging.DEBUG)
    template = http.url("/status/500/secret?-apikey=${HOOK_KEY}", userinfo="ops:${HOOK_PASSWORD}@")
    [result] = deliver(MESSAGE, [person(template)], retries=1, **FAST)
    [first, _] = http.to("/status/500/secret")
    assert first.path == "/status/500/secret?apikey=k3y-0f-the-hook"  # the secrets did reach the service
    assert first.headers["Authorization"].startswith("Basic ")
    shown = " ".join([result.destination, result.error or "", *(r.getMessage() for r in caplog.records)])
    for secret in ("hunter2-hunter2", "k3y-0f-the-hook"):
        assert secret not in shown
    assert result.destination == http.url("/status/500/secret?-apikey=****", userinfo="****:****@")
    assert any("notification failed" in r.getMessage() and "attempts=2" in r.getMessage() for r in caplog.records)


def test_one_structured_log_line_per_destination(
    http: HttpReceiver, refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="notifications")
    deliver(MESSAGE, [person(refused_url, http.url("/ok/log"))], retries=0, **FAST)
    lines = [r.getMessage() for r in caplog.records if r.name == "notifications.delivery"]
    assert len(lines) == 2
    assert lines[0].startswith("notification failed kind=assigned recipient=wang-fang destination=json://127.0.0.1:")
    assert "contact=1 attempts=1" in lines[0] and 'error="A Connection error' in lines[0]
    assert lines[1].startswith("notification delivered kind=assigned recipient=wang-fang")
    assert "contact=2 attempts=1 latency_ms=" in lines[1]


def test_a_channel_gets_every_url_and_a_role_its_primary(http: HttpReceiver, make_site: Any) -> None:
    site = make_site(
        {"wang-fang": [http.url("/ok/wang")], "sara-lopez": [http.url("/ok/sara")]},
        roles={
            "pr-oncall": {"members": ["wang-fang", "sara-lopez"], "primary": "wang-fang", "backup": "sara-lopez", "lead": "none"}
        },
        channels={"ops-broadcast": [http.url("/ok/room-1"), http.url("/status/500/room-2")]},
    )
    results = deliver(MESSAGE, recipients(["pr-oncall", "ops-broadcast"], site), retries=0, **FAST)
    assert [(r.recipient, r.contact, r.ok) for r in results] == [
        ("wang-fang", 1, True),
        ("ops-broadcast", 1, True),
        ("ops-broadcast", 2, False),
    ]
    assert results[0].via == "role pr-oncall (primary)"
    assert http.to("/ok/sara") == []


def test_a_message_that_cannot_be_rendered_is_a_failed_delivery(http: HttpReceiver) -> None:
    def broken(recipient: Recipient) -> Message:
        raise ValueError(f"no template for {recipient.id}")

    [result] = deliver(broken, [person(http.url("/ok/never"))], **FAST)
    assert (result.ok, result.attempts) == (False, 0)
    assert result.error == "could not render the message: no template for wang-fang"
    assert http.to("/ok/never") == []


def test_a_person_without_contacts_is_a_failed_delivery_not_silence() -> None:
    [result] = deliver(MESSAGE, [person()], **FAST)
    assert (result.ok, result.destination) == (False, "—")
    assert "has no contact URL" in result.error
