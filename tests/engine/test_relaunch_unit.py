"""Replacing lost flow runs stops after MAX_REPLACEMENTS: a flow that keeps dying is a bug, not load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prefect.states import Failed

from flows.engine.transitions import Engine
from flows.language.library import load_library
from flows.ledger import Ledger
from flows.ledger.schema import records
from flows.prefect.launcher import MAX_REPLACEMENTS, Launcher


def test_a_run_whose_flow_keeps_dying_is_given_up_once_and_left_to_people(repo_root: Path, tmp_path: Path) -> None:
    library = load_library(repo_root)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
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


def test_a_flow_run_created_by_two_launchers_at_once_is_recorded_once(repo_root: Path, tmp_path: Path,
                                                                    monkeypatch: Any) -> None:
    """The nudger's orphan launch and a slow first launch both get the flow run (same idempotency key)."""
    from contextlib import contextmanager
    from types import SimpleNamespace
    from uuid import uuid4

    library = load_library(repo_root)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    run_id = Engine(library, ledger).start("traffic-surge", {}, initiator="ana").run_id
    flow_run = SimpleNamespace(id=uuid4())  # what Prefect answers both, by the idempotency key

    class Prefect:
        def create_flow_run_from_deployment(self, *_args: Any, **_kwargs: Any) -> Any:
            return flow_run

    @contextmanager
    def client(_self: Launcher) -> Any:
        yield Prefect()

    monkeypatch.setattr(Launcher, "_client", client)
    monkeypatch.setattr(Launcher, "deployment_id", lambda *_args: uuid4())
    monkeypatch.setattr(Launcher, "ring_executors", lambda *_args: None)
    nudger, first = Launcher(ledger, "http://127.0.0.1:9/api"), Launcher(ledger, "http://127.0.0.1:9/api")
    assert nudger.launch(run_id) == first.launch(run_id) == str(flow_run.id)

    with ledger.read() as conn:
        created = list(conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == run_id) & (records.c.kind == "flow_run_created"))).scalars())
    assert [json.loads(d) for d in created] == [{"flow_run_id": str(flow_run.id)}]
    ledger.dispose()
