"""Trigger intake on the seed library with a real engine on a fresh SQLite ledger (no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.engine.transitions import Engine
from flows.language.library import Library, load_library
from flows.ledger import Ledger
from flows.ledger.schema import records, runs
from flows.triggers.intake import Intake


@pytest.fixture(scope="session")
def library(repo_root: Path) -> Library:
    """The repo's SOPs and config, validated."""
    return load_library(repo_root)


@pytest.fixture
def engine(library: Library, ledger: Ledger) -> Engine:
    """An engine without Prefect and without paging: runs are recorded, nothing is sent."""
    return Engine(library, ledger)


@pytest.fixture
def intake(engine: Engine) -> Intake:
    return Intake(engine)


def runs_of(engine: Engine, sop_id: str | None = None) -> list[dict[str, Any]]:
    """Every run (of one SOP), oldest first, with inputs and trigger decoded."""
    query = sa.select(runs).order_by(runs.c.started_at)
    if sop_id:
        query = query.where(runs.c.sop_id == sop_id)
    with engine.ledger.read() as conn:
        return [
            {**dict(r._mapping), "inputs": json.loads(r.inputs), "trigger": json.loads(r.trigger or "null")}
            for r in conn.execute(query)
        ]


def records_of(engine: Engine, run_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Ledger records (of a run, of a kind), oldest first, data decoded."""
    query = sa.select(records).order_by(records.c.seq)
    if run_id:
        query = query.where(records.c.run_id == run_id)
    if kind:
        query = query.where(records.c.kind == kind)
    with engine.ledger.read() as conn:
        return [{**dict(r._mapping), "data": json.loads(r.data)} for r in conn.execute(query)]
