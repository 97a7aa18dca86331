"""What a flow run run inside the executor is spared of Prefect's per-process set-up.

Prefect's engine is written for a process per flow run, and sets up on every run what such a
process needs once:

- **its own API client**, whose SSL context loads the CA bundle even for a plain-http API
  (15–20 ms of CPU, more under load). In the executor every run takes the executor's one client:
  Prefect's engine uses the client of the ``SyncClientContext`` it runs in (:func:`shared_client`),
  which the executor enters once; runs are started in copies of that context.
- **a suspension observer** (Prefect 3.8, flow runs of a deployment): a thread with its own event
  loop, a second (async) client and a websocket subscription to the server's event stream, so that a
  Suspended state set from outside the run (the Prefect UI) stops it at its next task. The run waits
  until the subscription is up before it starts, and on its way out joins the thread (up to 2 s); the
  server backfills and filters events for each subscription. Our flow runs suspend themselves (they
  wait on people through the engine, not through the Prefect UI), so the executor runs them without one
  (:func:`without_suspension_observer`): a Suspended state set from the Prefect UI while a run's automated
  steps run is not noticed by the run until they end.
- **a heartbeat thread** (Prefect 3.8 sends a flow-run heartbeat event every 180 s by default): started per
  run, and joined on the way out, where its 1 s sleeps keep the run's thread up to a second after the run
  has ended or suspended; each run also sends a heartbeat event the server stores. Prefect's heartbeats
  feed automations that mark silent flow runs crashed; here the executor's own beat in the ledger does that
  job (``flows.prefect.rescue``), so the executor's runs send none (:func:`shared_client`).

Measured in a storm of 120 runs (py-spy on the executor, ``python -m bench executor``): SSL contexts were
37% of the executor's samples, the observer's thread 33%. Then, in a storm of 300, run threads spent 60% of
their time joining heartbeat threads. Prefect is pinned (``>=3.8.8,<3.9``); when its
names move, nothing is changed and the executor says so at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def _no_observer(flow_run_id: Any, suspension_request: Any, polling_interval: float = 10) -> Iterator[None]:
    yield


def without_suspension_observer() -> bool:
    """Flow runs of this process start no suspension observer; False when Prefect's names moved."""
    from prefect import flow_engine

    if not callable(getattr(flow_engine, "observe_flow_run_suspension", None)):
        return False
    flow_engine.observe_flow_run_suspension = _no_observer
    return True


@contextmanager
def shared_client(api_url: str, auth_string: str | None) -> Iterator[Any]:
    """A sync Prefect client for ``api_url`` that the flow runs started inside the block use as theirs (they run
    in copies of its context, which also turns their heartbeats off); threads may share it (an httpx client is)."""
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.prefect.launcher import signed_in
    from flows.prefect.urgency import tells_urgency

    no_heartbeats = temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    with signed_in(api_url, auth_string), no_heartbeats, SyncClientContext() as context:
        tells_urgency(context.client)  # each run's calls say its queue's priority (the executor's threads)
        yield context.client
