"""The webhook pipeline: its two doors, its intake thread, and the group commit of alerts queued together.

What a user would notice if this broke: an alert answered but not recorded, a run whose
page or flow-run launch came before it was committed (the launcher finds no run), one bad
alert failing the others queued with it, or the fast path answering differently from the
documented FastAPI route.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.requests import Request

from flows.api import alerts, create_app, events, metrics
from flows.api.alerts import ALERTMANAGER, GRAFANA
from flows.api.app import WEBHOOKS
from flows.api.auth import Gate
from flows.api.errors import ApiError
from flows.api.intake_thread import IntakeThread
from flows.api.webhooks import WebhookPipeline
from flows.engine.transitions import Engine
from flows.language.library import Library
from flows.ledger import Ledger
from flows.ledger.schema import records, runs
from flows.triggers.intake import Intake
from tests.api.conftest import TOKEN_ENV, Api, ServedApp, unique
from tests.conftest import TestDatabase
from tests.triggers.payloads import alertmanager as am_body


def kinds(ledger: Ledger) -> list[str]:
    with ledger.read() as conn:
        return list(conn.execute(sa.select(records.c.kind).order_by(records.c.seq)).scalars())


# --- the pipeline's stages, in order -------------------------------------------------------------


class Seen:
    """What the stages after a refusal would have touched: the body, the intake thread."""

    def __init__(self) -> None:
        self.body_read = False
        self.handed: list[tuple[Any, ...]] = []
        self.served = 0  # requests inside serving() now
        self.served_at_hand_over: int | None = None

    async def run(self, fn: Any, *args: Any) -> list:  # stands in for IntakeThread.run
        self.handed.append((fn, *args))
        self.served_at_hand_over = self.served
        return []

    @contextmanager
    def serving(self) -> Iterator[None]:  # stands in for IntakeThread.serving: counts the requests inside
        self.served += 1
        try:
            yield
        finally:
            self.served -= 1


def post(seen: Seen, body: bytes, headers: dict[str, str]) -> Request:
    async def receive() -> dict[str, Any]:
        seen.body_read = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": "POST", "path": ALERTMANAGER.path, "headers": raw_headers}, receive)


ALERT = json.dumps(am_body({"labels": {"alertname": "ServerOverload", "severity": "page", "service": "x"}})).encode()


#: (what is wrong, token, the webhook, body, the refusal's status, whether the body was read by then)
REFUSALS = [
    ("no token", None, ALERTMANAGER, ALERT, 401, False),
    ("a role that may not", "audit-readonly", ALERTMANAGER, ALERT, 403, False),
    ("a token for another source", "grafana", ALERTMANAGER, ALERT, 403, False),
    ("a token that signs, unsigned", "grafana", GRAFANA, ALERT, 401, True),
    ("not JSON", "alertmanager", ALERTMANAGER, b"{not json", 400, True),
    ("not the payload", "alertmanager", ALERTMANAGER, b'{"version": "3"}', 422, True),
]


@pytest.mark.parametrize(("case", "token", "webhook", "body", "status", "body_read"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_the_first_stage_that_refuses_answers_and_no_later_stage_runs(
    library: Library, ledger: Ledger, token_env: dict[str, str],
    case: str, token: str | None, webhook: Any, body: bytes, status: int, body_read: bool,
) -> None:
    seen = Seen()
    pipeline = WebhookPipeline(Gate(library.site, token_env), Intake(Engine(library, ledger)), seen)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token_env[TOKEN_ENV[token]]}"} if token else {}
    request = post(seen, body, headers)
    with pytest.raises(ApiError) as refused:
        asyncio.run(pipeline.answer(webhook, request))
    assert refused.value.status == status, refused.value.message
    assert seen.body_read is body_read  # authenticate comes before the body is read
    assert seen.handed == []  # nothing reached the intake
    assert seen.served == 0  # the refused request no longer counts as served (a lone intake call would linger)


def test_a_signed_body_that_parses_is_handed_to_the_intake_with_the_callers_name(
    library: Library, ledger: Ledger, token_env: dict[str, str]
) -> None:
    seen = Seen()
    intake = Intake(Engine(library, ledger))
    pipeline = WebhookPipeline(Gate(library.site, token_env, clock=lambda: 1_800_000_000.0), intake, seen)  # type: ignore[arg-type]
    stamp = "1800000000"
    signature = hmac.new(token_env["SOP_HMAC_GRAFANA"].encode(), stamp.encode() + b":" + ALERT, hashlib.sha256)
    request = post(seen, ALERT, {
        "Authorization": f"Bearer {token_env[TOKEN_ENV['grafana']]}",
        "X-Grafana-Alerting-Signature": signature.hexdigest(),
        "X-Grafana-Alerting-Signature-Timestamp": stamp,
    })
    answer = asyncio.run(pipeline.answer(GRAFANA, request))
    [(method, to, alerts, actor)] = seen.handed
    assert (method, to, actor) == (Intake.alerts, intake, "token:grafana")
    assert [a.labels["service"] for a in alerts] == ["x"]
    assert answer == {"alerts": 1, "counts": {}, "outcomes": []}
    assert (seen.served_at_hand_over, seen.served) == (1, 0)  # served while its call was handed over, then not
    assert request.state.principal.token == "grafana"  # for the log line of a refusal further on


# --- the ledger's batch -------------------------------------------------------------------------


def test_a_batch_commits_its_transactions_together_and_then_runs_what_waited_for_the_commit(ledger: Ledger) -> None:
    seen_at_commit: list[list[str]] = []
    with ledger.batch():
        for n in range(3):
            with ledger.transaction() as tx:
                tx.append(f"note-{n}")
            ledger.after_commit(lambda: seen_at_commit.append(kinds(ledger)))
        with ledger.read() as conn:  # the batch reads its own writes
            assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one() == 3
        assert seen_at_commit == []  # nothing ran before the commit
    assert seen_at_commit == [["note-0", "note-1", "note-2"]] * 3
    with ledger.transaction() as tx:  # the chain goes on from the batch's last record
        tx.append("after")
    assert kinds(ledger) == ["note-0", "note-1", "note-2", "after"]


def test_a_failing_batch_leaves_nothing_and_runs_nothing(ledger: Ledger) -> None:
    ran: list[str] = []
    with pytest.raises(ValueError, match="bad"), ledger.batch():
        with ledger.transaction() as tx:
            tx.append("kept-only-if-all-commit")
        ledger.after_commit(lambda: ran.append("page"))
        raise ValueError("bad")
    assert kinds(ledger) == [] and ran == []
    with pytest.raises(RuntimeError, match="already open"), ledger.batch(), ledger.batch():
        pass


# --- the intake thread ----------------------------------------------------------------------------


def _a_broken_call_queued_between_two(ledger: Ledger, thread: IntakeThread) -> tuple[list[Any], list[str]]:
    """Calls ``a``, a broken one and ``b`` (each writing a record), queued behind a call that keeps ``thread``
    busy; what each of the four returned or raised, and the calls in the order they ran (each run counted)."""
    gate = threading.Event()
    ran: list[str] = []

    def hold() -> str:  # keeps the thread busy while the next calls queue up behind it
        gate.wait(10)
        return "held"

    def note(name: str) -> str:
        ran.append(name)
        with ledger.transaction() as tx:
            tx.append(name)
        return name

    def broken() -> None:
        ran.append("broken")
        with ledger.transaction() as tx:
            tx.append("half-written")
            raise LookupError("this alert is broken")

    async def main() -> list:
        first = asyncio.ensure_future(thread.run(hold))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(thread.run(note, "a")), asyncio.ensure_future(thread.run(broken)),
                  asyncio.ensure_future(thread.run(note, "b"))]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *queued, return_exceptions=True)

    try:
        return asyncio.run(main()), ran
    finally:
        thread.close()


def test_one_failing_call_fails_alone_and_the_calls_queued_with_it_are_recorded(ledger: Ledger) -> None:
    thread = IntakeThread(ledger)
    (held, a, bad, b), _ran = _a_broken_call_queued_between_two(ledger, thread)
    assert thread.largest_batch == 3  # a, broken and b queued behind `hold` and were tried together
    assert (held, a, b) == ("held", "a", "b")
    assert isinstance(bad, LookupError) and "broken" in str(bad)
    assert kinds(ledger) == ["a", "b"]  # the broken call's write was rolled back, the others kept


def test_calls_queued_together_are_each_a_transaction_of_their_own_where_commits_are_not_shared(
    ledger: Ledger,
) -> None:
    """``one_transaction=False`` (PostgreSQL when a commit does not wait for the disk): the calls that queued up
    behind a busy one run one by one, each committed alone: a broken one fails alone and the others ran once."""
    (held, a, bad, b), ran = _a_broken_call_queued_between_two(ledger, IntakeThread(ledger, one_transaction=False))
    assert (held, a, b) == ("held", "a", "b") and isinstance(bad, LookupError)
    assert ran == ["a", "broken", "b"]  # each once: no batch to roll back and run again
    assert kinds(ledger) == ["a", "b"]


def test_the_api_shares_a_transaction_among_queued_alerts_only_where_a_commit_waits(
    library: Library, ledger: Ledger, database: TestDatabase, token_env: dict[str, str]
) -> None:
    """SQLite: shared (group commit). PostgreSQL: shared when ``synchronous_commit`` makes a commit wait for the
    disk; the tests' cluster runs with it off, where each alert is a transaction of its own (a repeat: one round
    trip, ``Ledger.attach``)."""
    def shares(on: Ledger) -> bool:
        app = create_app(Engine(library, on), env=token_env)
        app.state.intake_thread.close()
        return app.state.intake_thread.one_transaction  # type: ignore[no-any-return]

    assert shares(ledger) is database.is_sqlite
    if database.is_sqlite:
        return
    name = sa.engine.make_url(ledger.url).database
    with ledger.engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET synchronous_commit = on")
    waiting = Ledger(ledger.url)
    try:
        assert shares(waiting) is True
    finally:
        waiting.dispose()


def _two_calls_apart(ledger: Ledger, requests_served: int) -> tuple[IntakeThread, list[str], float]:
    """Call ``a`` on a thread lingering up to 2 s while ``requests_served`` requests are being served, then ``b``
    once ``a`` is answered or 1.5 s later; the thread, what they returned, and the seconds ``a`` took."""
    thread = IntakeThread(ledger, linger=2.0)

    def note(name: str) -> str:
        with ledger.transaction() as tx:
            tx.append(name)
        return name

    async def main() -> tuple[list[str], float]:
        with ExitStack() as served:
            for _ in range(requests_served):
                served.enter_context(thread.serving())
            started = time.monotonic()
            first = asyncio.ensure_future(thread.run(note, "a"))
            done, _ = await asyncio.wait([first], timeout=1.5)
            took = time.monotonic() - started if done else float("inf")
            second = await thread.run(note, "b")
            return [await first, second], took

    try:
        answers, took = asyncio.run(main())
    finally:
        thread.close()
    return thread, answers, took


def test_a_lone_call_lingers_for_the_call_of_another_request_being_served_and_they_commit_together(
    ledger: Ledger,
) -> None:
    thread, answers, _took = _two_calls_apart(ledger, requests_served=2)
    assert answers == ["a", "b"]
    assert thread.largest_batch == 2  # a waited for b: one transaction for both
    assert kinds(ledger) == ["a", "b"]


def test_a_lone_call_does_not_linger_when_no_other_request_is_being_served(ledger: Ledger) -> None:
    thread, answers, took = _two_calls_apart(ledger, requests_served=1)
    assert answers == ["a", "b"]
    assert took < 1.5  # a was answered before b came, not after the 2 s linger
    assert thread.largest_batch < 2  # each call had its own transaction
    assert kinds(ledger) == ["a", "b"]


# --- over HTTP ----------------------------------------------------------------------------------


def _two_hundred_alerts_at_once(library: Library, ledger: Ledger, token_env: dict[str, str]) -> IntakeThread:
    """200 alerts over 20 dedup keys, 8 at a time, to one served API on ``ledger``: each answered 200 and
    recorded (20 runs started, 180 repeats), and each new run committed before its flow run was launched.
    The API's intake thread (what it grouped)."""
    committed_at_launch: dict[str, bool] = {}

    def launch(run_id: str) -> None:  # what the flow-run launcher would do first: find the run
        with ledger.reader.connect() as conn:
            committed_at_launch[run_id] = conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is not None

    app = create_app(Engine(library, ledger), env=token_env, launch=launch)
    served = ServedApp(app)
    api = Api(served.url, None, {n: token_env[v] for n, v in TOKEN_ENV.items()}, "")  # type: ignore[arg-type]
    prefix = unique("fastpath")
    bodies = [am_body({"labels": {"alertname": "ServerOverload", "severity": "page",
                                  "service": f"{prefix}-{i % 20:02d}", "instance": f"i{i}"}}) for i in range(200)]
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda body: api.as_("alertmanager").post("/v1/alerts/alertmanager", json=body),
                                    bodies))
    finally:
        for client in api.clients.values():
            client.close()
        served.stop()
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:3]
    counts = [a.json()["counts"] for a in answers]
    assert sum(c.get("started", 0) for c in counts) == 20 and sum(c.get("attached", 0) for c in counts) == 180
    with ledger.read() as conn:
        opened = conn.execute(sa.select(runs.c.id, runs.c.repeats).where(runs.c.dedup_key.like(f"{prefix}%"))).all()
    assert len(opened) == 20 and sum(r.repeats for r in opened) == 180
    assert committed_at_launch == {r.id: True for r in opened}
    return app.state.intake_thread  # type: ignore[no-any-return]


def test_concurrent_alerts_are_each_recorded_before_their_run_is_launched(
    library: Library, ledger: Ledger, token_env: dict[str, str]
) -> None:
    _two_hundred_alerts_at_once(library, ledger, token_env)


@pytest.mark.postgresql_only("PostgreSQL whose commits wait for the disk: the intake groups them, as on SQLite")
def test_concurrent_alerts_on_a_postgresql_whose_commits_wait_are_grouped_and_each_recorded(
    library: Library, ledger: Ledger, token_env: dict[str, str]
) -> None:
    """The same 200 alerts with ``synchronous_commit`` on (PostgreSQL's default; the tests' cluster runs with it
    off): queued alerts share transactions (batches of repeats attaching NOWAIT, refused and run again one by one
    when another process holds the run) and every one is recorded once."""
    name = sa.engine.make_url(ledger.url).database
    with ledger.engine.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET synchronous_commit = on")
    waiting = Ledger(ledger.url)
    try:
        thread = _two_hundred_alerts_at_once(library, waiting, token_env)
    finally:
        waiting.dispose()
    assert thread.one_transaction and thread.largest_batch > 1


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-route"])
def test_the_fast_path_and_the_documented_route_answer_alike(
    library: Library, ledger: Ledger, token_env: dict[str, str], fast_path: bool
) -> None:
    served = ServedApp(create_app(Engine(library, ledger), env=token_env, fast_path=fast_path))
    api = Api(served.url, None, {n: token_env[v] for n, v in TOKEN_ENV.items()}, "")  # type: ignore[arg-type]
    path = "/v1/alerts/alertmanager"
    service = unique("alike")
    body = am_body({"labels": {"alertname": "ServerOverload", "severity": "page", "service": service}})
    try:
        none = api.as_(None).post(path, json=body)
        wrong = api.as_("audit-readonly").post(path, json=body)
        malformed = api.as_("alertmanager").post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        mistyped = api.as_("alertmanager").post(path, json={**body, "alerts": [{**body["alerts"][0], "labels": "x"}]})
        first = api.as_("alertmanager").post(path, json=body)
        again = api.as_("alertmanager").post(path, json=body)
        get = api.as_("alertmanager").get(path)
    finally:
        for client in api.clients.values():
            client.close()
        served.stop()
    assert (none.status_code, none.json()["field"]) == (401, "header.authorization")
    assert none.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 403 and "has role auditor" in wrong.json()["error"]
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("malformed JSON")
    assert mistyped.status_code == 422 and mistyped.json()["field"] == "body.alerts.0.labels"
    assert first.status_code == 200 and first.json()["alerts"] == 1 and first.json()["counts"] == {"started": 1}
    assert again.json()["counts"] == {"attached": 1} and again.json()["outcomes"][0]["repeats"] == 1
    assert get.status_code == 405


def test_the_fast_path_serves_every_documented_webhook() -> None:
    documented = {route.path for route in alerts.router.routes + events.router.routes + metrics.router.routes}
    assert {webhook.path for webhook in WEBHOOKS} == documented


#: (what, path, token, body) for events and metrics, answered in this order by each door
EVENTS_AND_METRICS = [
    ("an event", "/v1/events", "alertmanager",
     {"name": "platform.algorithm_changed", "key": "café-1", "values": {"platform": "café-1", "region": "cn"}}),
    ("the same event", "/v1/events", "alertmanager",
     {"name": "platform.algorithm_changed", "key": "café-1", "values": {"platform": "café-1", "region": "cn"}}),
    ("an event no SOP listens for", "/v1/events", "alertmanager", {"name": "nobody.listens"}),
    ("an event missing an input", "/v1/events", "alertmanager",
     {"name": "experiment.concluded", "values": {"verdict": "winner", "experiment_id": "x"}}),
    ("a bad event", "/v1/events", "alertmanager", {"name": "x y", "values": {"nested": {"no": 1}}}),
    ("an event as a list", "/v1/events", "alertmanager", []),
    ("an event without a token", "/v1/events", None, {"name": "x"}),
    ("an event from an auditor", "/v1/events", "audit-readonly", {"name": "x"}),
    ("samples that fire", "/v1/metrics", "alertmanager", {"samples": [
        {"metric": "inventory_cover_days", "value": 9, "at": "2026-11-20T08:10:00+08:00", "labels": {"sku": "sku-1"}},
        {"metric": "inventory_cover_days", "value": 6.5, "timestamp": 1795600000, "labels": {"sku": "sku-1"}}]}),
    ("the same samples", "/v1/metrics", "alertmanager", {"samples": [
        {"metric": "inventory_cover_days", "value": 6.5, "timestamp": 1795600000, "labels": {"sku": "sku-1"}}]}),
    ("a bad sample", "/v1/metrics", "alertmanager",
     {"samples": [{"metric": "inventory_cover_days", "value": 1, "at": "yesterday"}]}),
    ("no samples", "/v1/metrics", "alertmanager", {"samples": []}),
    ("samples from an operator", "/v1/metrics", "ops-console", {"samples": []}),
]


def answers(library: Library, ledger: Ledger, token_env: dict[str, str], fast_path: bool) -> list[tuple]:
    """What each request of EVENTS_AND_METRICS got, run ids replaced by their order of appearance."""
    served = ServedApp(create_app(Engine(library, ledger), env=token_env, fast_path=fast_path))
    api = Api(served.url, None, {n: token_env[v] for n, v in TOKEN_ENV.items()}, "")  # type: ignore[arg-type]
    run_ids: dict[str, str] = {}
    got = []
    try:
        for _what, path, token, body in EVENTS_AND_METRICS:
            answer = api.as_(token).post(path, json=body)
            text = re.sub(r'"run":"(\w+)"', lambda m: f'"run":"{run_ids.setdefault(m[1], str(len(run_ids)))}"',
                          answer.text)
            got.append((answer.status_code, answer.headers.get("www-authenticate"), answer.headers["content-type"],
                        text))
    finally:
        for client in api.clients.values():
            client.close()
        served.stop()
    return got


def test_events_and_metrics_answer_alike_through_the_fast_path_and_the_routes(
    library: Library, token_env: dict[str, str], tmp_path: Path, database: TestDatabase
) -> None:
    doors = {}
    for fast_path in (True, False):
        ledger = Ledger(database.url_at(tmp_path / f"ledger-{fast_path}.db"))
        ledger.migrate()
        try:
            doors[fast_path] = answers(library, ledger, token_env, fast_path)
        finally:
            ledger.dispose()
    statuses = [status for status, *_ in doors[True]]
    assert statuses == [200, 200, 200, 200, 422, 422, 401, 403, 200, 200, 422, 422, 403]
    assert "café-1" in doors[True][0][3]  # as sent, not \u-escaped
    for (what, *_), fast, route in zip(EVENTS_AND_METRICS, doors[True], doors[False], strict=True):
        assert fast == route, what
