"""Flow runs a dead executor left behind: found, put back in their queue once, recorded once.

An executor (:mod:`flows.prefect.executor`) names the flow runs it runs in its beat
(``executors``, every 2 s). A flow run of an open run that Prefect shows Pending or Running,
that no living executor names, and whose state is older than :data:`GRACE`, has nothing
behind it: its executor was killed between taking it and finishing it. The nudger puts it
back in its queue (Scheduled, "Rescheduled"), and an executor reruns it from the top: the
ledger knows what is done, completed tasks come back from Prefect's cache, and a step that
was running when its process died runs again (at least once, never lost).

Once: the ``flow_run_rescued`` record is written first, fenced by the stranded state's id,
so two nudgers never both rescue it; the record's winner then moves the flow run. If that
move fails, the next sweep moves it again without a second record.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from flows.engine.outbox import ALIVE_FOR
from flows.engine.store import RunStore
from flows.ledger import Ledger
from flows.ledger.schema import executors, records
from flows.ledger.vocabulary import RecordKind
from flows.logfmt import kv

log = logging.getLogger("sop.rescue")

#: a Pending or Running flow run no living executor names is left alone this long (its executor may not
#: have beaten since it took it: beats are BEAT_EVERY apart)
GRACE = timedelta(seconds=15)
#: an executor counts as alive this long after its last beat (beats are 2 s apart, on a thread of their own; a
#: machine so loaded that a beat waits this long on the ledger is not a dead executor)
EXECUTOR_ALIVE_FOR = 3 * ALIVE_FOR


def living_executors(conn: Any, now: datetime) -> dict[str, set[str]]:
    """Executors that beat within EXECUTOR_ALIVE_FOR: name → the flow runs they run."""
    rows = conn.execute(sa.select(executors.c.name, executors.c.flow_runs).where(
        executors.c.beat_at > now - EXECUTOR_ALIVE_FOR))
    return {row.name: set(json.loads(row.flow_runs or "[]")) for row in rows}


def stranded(ledger: Ledger, client: Any, now: datetime | None = None,
             grace: timedelta = GRACE) -> list[tuple[str, Any]]:
    """(run id, flow run) of open runs whose flow run is Pending or Running with no living executor behind it,
    in that state for longer than ``grace``."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    now = now or datetime.now(UTC)
    with ledger.read() as conn:
        bound = RunStore.open_flow_runs(conn)
        held = set().union(*living_executors(conn, now).values())
    ids = [f for f in bound if f not in held]
    found: list[tuple[str, Any]] = []
    for start in range(0, len(ids), 200):  # the Prefect API returns at most 200 per call
        wanted = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(f) for f in ids[start:start + 200]]),
                               state=FlowRunFilterState(type=FlowRunFilterStateType(
                                   any_=[StateType.PENDING, StateType.RUNNING])))
        for flow_run in client.read_flow_runs(flow_run_filter=wanted, limit=200):
            if flow_run.state is not None and flow_run.state.timestamp < now - grace:
                found.append((bound[str(flow_run.id)], flow_run))
    return found


def rescue(ledger: Ledger, client: Any, now: datetime | None = None, grace: timedelta = GRACE) -> int:
    """Put every stranded flow run (:func:`stranded`) back in its queue; returns how many were moved."""
    return sum(put_back(ledger, client, run_id, flow_run, "its executor stopped; run again from the ledger")
               for run_id, flow_run in stranded(ledger, client, now, grace))


def put_back(ledger: Ledger, client: Any, run_id: str, flow_run: Any, message: str, **data: Any) -> bool:
    """Put a flow run with nothing behind it back in its queue (Scheduled, "Rescheduled"), recording
    ``flow_run_rescued`` once for the state it was left in (``data``: what the record adds, e.g. the stopping
    executor that let it go); True when moved. A move that fails is logged, and left to the next sweep."""
    state = flow_run.state
    if _claim(ledger, run_id, str(flow_run.id), str(state.id), state.type.value, **data):
        log.warning(kv("event=flow_run_rescued", run=run_id, flow_run=str(flow_run.id), state=state.type.value,
                       since=state.timestamp.isoformat(), **data))
    try:
        from prefect.states import Scheduled

        client.set_flow_run_state(flow_run.id, Scheduled(name="Rescheduled", message=message), force=True)
        return True
    except Exception as exc:  # the next sweep moves it (no second record)
        log.warning(kv("event=rescue_failed", run=run_id, flow_run=str(flow_run.id), error=str(exc)[:200]))
        return False


def _claim(ledger: Ledger, run_id: str, flow_run_id: str, state_id: str, state: str, **data: Any) -> bool:
    """Write ``flow_run_rescued`` for this stranded state unless it is written already; True when written here."""
    with ledger.transaction() as tx:
        earlier = tx.conn.execute(sa.select(records.c.data).where(
            (records.c.run_id == run_id) & (records.c.kind == RecordKind.FLOW_RUN_RESCUED))).scalars()
        if any(json.loads(data).get("state_id") == state_id for data in earlier):
            return False
        RunStore(tx).record(RecordKind.FLOW_RUN_RESCUED, run_id, flow_run_id=flow_run_id, state_id=state_id,
                            state=state, **data)
    return True
