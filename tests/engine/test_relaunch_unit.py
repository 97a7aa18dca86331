"""Replacing lost flow runs stops after MAX_REPLACEMENTS: a flow that keeps dying is a bug, not load."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from prefect.states import Failed

from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import records
from flows.prefect.launcher import MAX_REPLACEMENTS, Launcher
from tests.conftest import TestDatabase


def test_a_run_whose_flow_keeps_dying_is_given_up_once_and_left_to_people(database: TestDatabase, repo_root: Path, tmp_path: Path) -> None:
    library = load_library(repo_root)
    ledger = Ledger(database.url_at(tmp_path / "ledger.db"))
    ledger.migrate()
    run_id = Engine(library, ledger).start("traffic-surge", {}, initiator="ana").run_id
    with ledger.transaction() as tx:
        for n in range(MAX_REPLACEMENTS):
            tx.append("flow_run_created", run_id, flow_run_id=f"fr-{n + 1}", replaces=f"fr-{n}", reason="FAILED: x")
    launcher = Launcher(ledger, "http://127.0.0.1:9/api")  # nothing listens: giving up must not call Prefect

    dead = Failed(message="ValueError: a bug in the flow body")
    assert launcher._replace(run_id, f"fr-{MAX_REPLACEMENTS}", dead) is False
    assert launcher._replace(run_id, f"fr-{MAX_REPLACEMENTS}", dead) is False  # said once, not every sweep

    with ledger.read() as conn:
        given_up = [json.loads(d) for d in conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == run_id) & (records.c.kind == "flow_run_given_up"))).scalars()]
    assert given_up == [{"flow_run_id": f"fr-{MAX_REPLACEMENTS}", "reason": "FAILED: ValueError: a bug in the flow body",
                         "given_up": MAX_REPLACEMENTS}]
    ledger.dispose()


class _Prefect:
    """A Prefect server's answers to a launch: one flow run per idempotency key, as the server keeps them."""

    def __init__(self) -> None:
        self.created: dict[str, object] = {}

    def read_deployment_by_name(self, name: str) -> object:
        return type("Deployment", (), {"id": "d-1"})()

    def create_flow_run_from_deployment(self, deployment: object, *, idempotency_key: str, **_: object) -> object:
        import uuid

        return self.created.setdefault(idempotency_key, type("FlowRun", (), {"id": uuid.uuid4(),
                                                                              "work_queue_name": "outage"})())


def test_two_launches_of_one_run_record_its_flow_run_once_and_ring_the_executors(repo_root: Path, tmp_path: Path) -> None:
    """The nudger's orphan launch racing a slow first launch gets the same flow run (idempotency key): it is
    recorded once. Each launch rings the executors' doorbells with the flow run's id and queue, so one takes it at
    once."""
    from flows.engine.outbox import Doorbell, Heartbeat
    from flows.ledger.schema import executors

    library = load_library(repo_root)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    run_id = Engine(library, ledger).start("traffic-surge", {}, initiator="ana").run_id
    bell = Doorbell()
    Heartbeat(ledger, "executor-test", bell.address, table=executors).beat()
    launcher = Launcher(ledger, "http://127.0.0.1:9/api")
    launcher._local.client = _Prefect()

    first, second = launcher.launch(run_id), launcher.launch(run_id)

    assert first == second
    with ledger.read() as conn:
        created = conn.execute(sa.select(sa.func.count()).where(
            (records.c.run_id == run_id) & (records.c.kind == "flow_run_created"))).scalar_one()
    assert created == 1
    assert bell.messages(1.0)[:1] == [f"{first} outage".encode()]
    bell.close()
    ledger.dispose()
