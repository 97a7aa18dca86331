"""The engine's pager against real receivers: what the ledger keeps of each delivery, what `sop status`
counts, and what a notify step says when its message got nowhere.

A real SQLite ledger with a run in it, the real Pager and Dispatcher, and the session's HTTP
receiver (``/status/500/...`` answers 500, ``/ok/...`` 200) or a port where nothing listens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.engine.board import status_rows
from flows.engine.paging import Pager
from flows.engine.transitions import Engine, Page
from flows.language.library import Library, load_library
from flows.language.steps import StepContext, notify
from flows.language.steps.notify import NotifyStep
from flows.ledger import Ledger
from flows.ledger.schema import deliveries, records
from notifications import Dispatcher
from tests.notifications.conftest import HttpReceiver

SOP = "traffic-surge"
SECRET = "hunter2-pass"


@pytest.fixture(scope="module")
def library(repo_root: Path) -> Library:
    return load_library(repo_root, env={})


@pytest.fixture
def run(library: Library, ledger: Ledger) -> tuple[Engine, str]:
    """An engine without a pager (its own pages are not sent) and a run started on it."""
    engine = Engine(library, ledger)
    sop = library.get(SOP).sop
    inputs = {n: (s.default if s.default is not None else "x") for n, s in sop.inputs.items()
              if s.is_required or s.default is not None}
    return engine, engine.start(SOP, inputs, initiator="ana", launch=False).run_id


def page_to(site: Any, ledger: Ledger, engine: Engine, run_id: str, targets: list[str]) -> None:
    """Page ``targets`` about the run (one try and one retry per contact) and wait until it is recorded."""
    pager = Pager(site, ledger, dispatcher=Dispatcher(workers=4, timeout=1.0, retries=1, backoff=0.01))
    pager.send(engine, Page("run_started", run_id, None, targets)).result()
    pager.close()


def delivery_rows(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    with ledger.read() as conn:
        query = sa.select(deliveries).where(deliveries.c.run_id == run_id).order_by(deliveries.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


def failed_notifications(engine: Engine, run_id: str) -> int:
    return status_rows(engine, run_id)[0]["failed_notifications"]


def test_a_person_reached_on_their_second_contact_is_two_rows_and_no_failure(
        http: HttpReceiver, make_site: Any, ledger: Ledger, run: tuple[Engine, str]) -> None:
    engine, run_id = run
    site = make_site({"sam-ops": [http.url("/status/500/sam", userinfo=f"ops:{SECRET}@"), http.url("/ok/sam")]})

    page_to(site, ledger, engine, run_id, ["sam-ops"])

    assert len(http.to("/status/500/sam")) == 2 and len(http.to("/ok/sam")) == 1
    first, second = delivery_rows(ledger, run_id)
    assert (first["recipient"], first["ok"], first["attempts"]) == ("sam-ops", False, 2)
    assert "error=500" in first["error"]
    assert first["latency_ms"] >= 10  # two attempts and the backoff between them
    assert first["destination"].startswith("json://****:****@127.0.0.1:") and SECRET not in first["destination"]
    assert (second["ok"], second["attempts"], second["error"]) == (True, 1, None)
    assert second["latency_ms"] is not None and second["destination"] == http.url("/ok/sam")
    with ledger.read() as conn:
        [seq] = conn.execute(sa.select(records.c.seq).where(
            (records.c.run_id == run_id) & (records.c.kind == "notification"))).scalars()
    assert (first["page"], first["lane"]) == (second["page"], second["lane"]) == (seq, 0)
    assert failed_notifications(engine, run_id) == 0  # Sam got the page


def test_a_lane_that_reached_nobody_is_one_failed_notification(
        http: HttpReceiver, refused_url: str, make_site: Any, ledger: Ledger, run: tuple[Engine, str]) -> None:
    engine, run_id = run
    site = make_site({"sam-ops": [http.url("/status/500/sam"), refused_url], "kim-ops": [http.url("/ok/kim")]},
                     channels={"ops-room": [http.url("/ok/room"), http.url("/status/503/room")]})

    page_to(site, ledger, engine, run_id, ["sam-ops", "kim-ops", "ops-room"])

    assert [(r["recipient"], r["ok"]) for r in delivery_rows(ledger, run_id)] == [
        ("sam-ops", False), ("sam-ops", False), ("kim-ops", True), ("ops-room", True), ("ops-room", False)]
    # Sam (both contacts failed) and the room's second URL (a broadcast URL is a lane of its own)
    assert failed_notifications(engine, run_id) == 2


def test_a_refused_connection_is_recorded_with_its_attempts(
        refused_url: str, make_site: Any, ledger: Ledger, run: tuple[Engine, str]) -> None:
    engine, run_id = run
    site = make_site({"sam-ops": [refused_url]})

    page_to(site, ledger, engine, run_id, ["sam-ops"])

    [row] = delivery_rows(ledger, run_id)
    assert (row["recipient"], row["destination"], row["ok"], row["attempts"]) == ("sam-ops", refused_url, False, 2)
    assert "Connection refused" in row["error"]
    assert row["latency_ms"] is not None and row["kind"] == "run_started"
    assert failed_notifications(engine, run_id) == 1


def test_a_notify_step_nobody_got_is_done_and_says_so_in_its_outputs_status_and_audit(
        http: HttpReceiver, refused_url: str, make_site: Any, ledger: Ledger, run: tuple[Engine, str]) -> None:
    engine, run_id = run
    site = make_site({"sam-ops": [http.url("/status/500/sam"), http.url("/ok/sam")], "kim-ops": [refused_url]})
    pager = Pager(site, ledger, dispatcher=Dispatcher(workers=4, timeout=1.0, retries=1, backoff=0.01))
    step = NotifyStep.model_validate({"id": "tell", "kind": "notify", "notify": ["sam-ops", "kim-ops"],
                                      "message": {"title": "Rollback done in {{ run.class }}"}})

    ctx = StepContext(variables={"run": {"class": "outage"}}, run_id=run_id, pager=pager)

    # Kim's only contact refuses: the step is not failed, it tells what happened
    assert notify.execute(step, ctx) == {"delivered": False, "reached": 1, "failed": 1}
    assert [(r["recipient"], r["ok"], r["kind"]) for r in delivery_rows(ledger, run_id)] == [
        ("sam-ops", False, "message"), ("sam-ops", True, "message"), ("kim-ops", False, "message")]
    assert failed_notifications(engine, run_id) == 1
    # nobody at all got it: still done, never a failed step (let alone a failed run)
    only_kim = step.model_copy(update={"id": "tell-kim", "notify": ["kim-ops"]})
    assert notify.execute(only_kim, ctx) == {"delivered": False, "reached": 0, "failed": 1}
    pager.close()
    assert failed_notifications(engine, run_id) == 2
    with ledger.read() as conn:
        [data] = conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == run_id) & (records.c.kind == "notification") & (records.c.step_id == "tell"))).scalars()
    assert [(r["recipient"], r["status"]) for r in json.loads(data)["results"]] == [
        ("sam-ops", "failed"), ("sam-ops", "ok"), ("kim-ops", "failed")]


def test_a_notify_step_message_reads_yes_and_no_not_python(
        http: HttpReceiver, make_site: Any, ledger: Ledger, run: tuple[Engine, str]) -> None:
    """A checkbox and an alert's labels in a notify step's message, as the channel's readers get them."""
    _, run_id = run
    site = make_site({}, channels={"ops-room": [http.url("/ok/room")]})
    pager = Pager(site, ledger, dispatcher=Dispatcher(workers=1, timeout=1.0, retries=0))
    step = NotifyStep.model_validate({"id": "tell", "kind": "notify", "notify": ["ops-room"], "message": {
        "title": "Rollback approved: {{ steps.review.approved }}",
        "body": "Rolled back: {{ steps.review.rolled_back }}. Note: {{ inputs.note }}. "
                "Hosts: {{ trigger.hosts }}. Labels: {{ trigger.labels }}."
                "{% if steps.review.rolled_back %} ROLLED BACK{% endif %}"}})
    variables = {"run": {"class": "outage"}, "inputs": {"note": None},
                 "steps": {"review": {"approved": True, "rolled_back": False}},
                 "trigger": {"hosts": ["web-1", "web-2"], "labels": {"service": "gateway", "paged": True}}}

    notify.execute(step, StepContext(variables=variables, run_id=run_id, pager=pager))
    pager.close()

    [request] = http.to("/ok/room")
    assert request.json["title"] == "[P2] Rollback approved: yes"
    assert request.json["message"] == (
        "Rolled back: no. Note: —. Hosts: web-1, web-2. Labels: service: gateway, paged: yes.")
