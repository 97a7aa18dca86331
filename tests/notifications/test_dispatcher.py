"""Fire and forget: the engine submits and moves on; a callback gets the results later."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from notifications import DeliveryResult, Dispatcher, Message, NotificationError, Recipient
from tests.notifications.conftest import HttpReceiver

MESSAGE = Message(title="[P2] Escalated to you", body="Late.", notify_type="warning", priority=2, kind="escalated")


def person(url: str, pid: str) -> Recipient:
    return Recipient(id=pid, name=pid.title(), kind="person", urls=(url,))


def test_submit_returns_at_once_and_the_callback_gets_the_results(http: HttpReceiver) -> None:
    got: list[list[DeliveryResult]] = []
    called = threading.Event()

    def on_done(results: list[DeliveryResult]) -> None:
        got.append(results)
        called.set()

    with Dispatcher(workers=4, timeout=0.6, retries=0) as dispatcher:
        started = time.perf_counter()
        future = dispatcher.submit(
            MESSAGE, [person(http.url("/slow/3/a"), "slow-one"), person(http.url("/ok/b"), "fast-one")], on_done=on_done
        )
        returned_after = time.perf_counter() - started
        assert returned_after < 0.3  # the engine is not held up by the slow destination (0.6 s timeout)
        assert not called.is_set()
        assert called.wait(5)
    [results] = got
    assert future.result(0) == results
    assert [(r.recipient, r.ok) for r in results] == [("slow-one", False), ("fast-one", True)]  # recipient order


def test_a_failing_callback_is_logged_and_the_future_still_resolves(
    http: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    def on_done(results: list[DeliveryResult]) -> None:
        raise RuntimeError("ledger is down")

    with Dispatcher(workers=2, timeout=1, retries=0) as dispatcher:
        future = dispatcher.submit(MESSAGE, [person(http.url("/ok/c"), "li-wei")], on_done=on_done)
        [result] = future.result(5)
    assert result.ok
    assert any(
        'notification callback failed error="RuntimeError: ledger is down"' in r.getMessage() for r in caplog.records
    )


def test_nothing_to_deliver_completes_at_once() -> None:
    seen: list[Any] = []
    with Dispatcher() as dispatcher:
        assert dispatcher.submit(MESSAGE, [], on_done=seen.append).result(1) == []
    assert seen == [[]]


def test_many_submissions_share_the_pool(http: HttpReceiver) -> None:
    with Dispatcher(workers=8, timeout=1, retries=0) as dispatcher:
        futures = [dispatcher.submit(MESSAGE, [person(http.url(f"/ok/many-{i}"), f"p{i}")]) for i in range(50)]
        results = [f.result(10) for f in futures]
    assert all(r.ok for [r] in results)
    assert len(http.to("/ok/many-")) == 50


def test_a_closed_dispatcher_refuses_new_work() -> None:
    dispatcher = Dispatcher()
    dispatcher.close()
    with pytest.raises(NotificationError, match="closed"):
        dispatcher.submit(MESSAGE, [])


def test_log_lines_do_not_leak_from_the_callback_thread(http: HttpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="notifications")
    with Dispatcher(workers=1, timeout=1, retries=0) as dispatcher:
        dispatcher.submit(MESSAGE, [person(http.url("/ok/logged"), "guo-jing")]).result(5)
    assert [r.getMessage().split(" kind=")[0] for r in caplog.records if r.name == "notifications.delivery"] == [
        "notification delivered"
    ]
