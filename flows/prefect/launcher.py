"""The Prefect side of a run: create its flow run, resume it when there is work, cancel it.

A resume can race with the flow run suspending itself (it is still Running when a report
arrives). Then the run is flagged ``nudge`` in the ledger and ``sop serve`` retries until
the flow run is suspended and can be resumed: no report is ever left without a flow run
to act on it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from flows.engine.store import RunStore
from flows.language.spec import PRIORITY
from flows.ledger import Ledger
from flows.ledger.vocabulary import RecordKind, RunStatus
from flows.logfmt import kv
from flows.prefect.names import AUTH_ENV, RUN_TAG, deployment_name
from flows.prefect.resume import ResumeTokens, born_suspended, expect_resume_input, pause_key
from flows.prefect.urgency import tells_urgency, urgent

log = logging.getLogger("sop.launcher")


def signed_in(api_url: str, auth_string: str | None) -> Any:
    """Prefect's settings for a client of ``api_url`` signed in with ``auth_string`` (default:
    ``$PREFECT_API_AUTH_STRING``), as a ``temporary_settings`` context.

    Prefect reads its settings once, at import: both are handed to it here, so a process
    that learns them later (``sop serve`` makes the auth string) still sends them.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    auth = auth_string if auth_string is not None else os.environ.get(AUTH_ENV) or None
    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    return temporary_settings(updates=updates)


@contextmanager
def prefect_client(api_url: str, auth_string: str | None = None) -> Iterator[Any]:
    """A sync Prefect client for ``api_url``, signed in with ``auth_string``; Prefect's settings say so for
    as long as the block runs (what runs inside, a flow run's context copied from it, sees them too)."""
    from prefect.client.orchestration import get_client

    with signed_in(api_url, auth_string), get_client(sync_client=True) as client:
        yield client


def open_client(api_url: str, auth_string: str | None = None) -> Any:
    """A sync Prefect client for ``api_url`` that stays open (close it with ``__exit__``): it keeps the
    URL and auth string it was made with, whatever the caller's settings are later."""
    from prefect.client.orchestration import get_client

    with signed_in(api_url, auth_string):
        client = get_client(sync_client=True)
    client.__enter__()
    tells_urgency(client)  # a launch or resume says its run's class (:meth:`Launcher.launch`)
    return client


@contextmanager
def _retrying_once() -> Iterator[None]:
    """Prefect's client retries a call refused with 503 (its server on SQLite when busy) 5 times, 2 to 32 s apart:
    a launch inside ``sop run`` or a start request then waited minutes. Launches try once more at most: a
    failed launch is tried again by the nudger, with its own backoff (:meth:`Launcher.launch_orphans`)."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 1}):
        yield


#: how many times a run's dead flow run is replaced before the run is left to people
MAX_REPLACEMENTS = 3
#: what a resume came to: done; not now (try again); nothing left to resume
RESUMED, BUSY, SETTLED = "resumed", "busy", "settled"
#: the launchers of this process with resumes on their own thread (a command waits for them before it exits)
_NUDGING: weakref.WeakSet[Launcher] = weakref.WeakSet()
#: a run whose flow run cannot be created is tried again after 1 s, then twice as long each time (at most
#: 5 minutes apart); after LAUNCH_ATTEMPTS failures (about 9 minutes) it is marked and its owner paged, once,
#: and the tries go on 5 minutes apart (a Prefect server back after an outage still gets the run)
LAUNCH_RETRY_FIRST_S = 1.0
LAUNCH_RETRY_MAX_S = 300.0
LAUNCH_ATTEMPTS = 10
#: how much of an error text a log line or a record keeps (Prefect's refusals can quote every parameter)
ERROR_CHARS = 300


def short(error: BaseException | str) -> str:
    """An error as one short line: its first :data:`ERROR_CHARS` characters, whitespace folded."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


@dataclass
class _Failing:
    """A run whose flow run could not be created yet: how often, the last error, when to try again."""

    attempts: int
    error: str
    retry_at: float

    @staticmethod
    def delay(attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failures: 1, 2, 4… at most LAUNCH_RETRY_MAX_S."""
        return min(LAUNCH_RETRY_FIRST_S * 2 ** (attempts - 1), LAUNCH_RETRY_MAX_S)


class LaunchError(RuntimeError):
    """The Prefect server refused or could not be reached; the message says which (``hint``: what to do, if known)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


#: seconds a process that stops waits for the resumes its reports started before it leaves them to the nudger
RESUME_WAIT = 5.0


def settle_nudges(timeout: float) -> bool:
    """:meth:`Launcher.settle_nudges` of every launcher of this process that resumed runs on its thread."""
    deadline = time.monotonic() + timeout
    return all(launcher.settle_nudges(max(0.0, deadline - time.monotonic())) for launcher in list(_NUDGING))


#: seconds after its Suspended state by which a live flow run has stored its resume input's schema
SCHEMA_GRACE_S = 5.0


def _age_s(state: Any) -> float:
    """Seconds since the state was set (0 when it carries no time)."""
    at = getattr(state, "timestamp", None)
    return 0.0 if at is None else (datetime.now(UTC) - at).total_seconds()


def _schema_missing(result: Any) -> bool:
    """Prefect turned a resume away because the suspension's resume input schema is not stored."""
    reason = getattr(getattr(result, "details", None), "reason", None) or ""
    return "schema not found" in reason


class Launcher:
    """Creates, resumes and cancels the flow runs of SOP runs (one Prefect client, cached ids)."""

    def __init__(self, ledger: Ledger, api_url: str, pool: str = "sop-pool", *,
                 clock: Callable[[], float] = time.monotonic, auth_string: str | Callable[[], str | None] | None = None,
                 root: Path | None = None):
        """``auth_string``: what the Prefect server asks for, or how to read it when first needed (an
        unsafe file is then told where a launch fails, as its error); default ``$PREFECT_API_AUTH_STRING``.
        ``root``: the site whose secret signs resume tokens (default ``$SOP_HOME`` or here)."""
        self.ledger = ledger
        self.api_url = api_url
        self.pool = pool
        self.clock = clock
        self.auth_string = auth_string
        self.root = root
        #: the engine that records a launch given up and pages the run's owner (``flows.runtime.engine`` sets
        #: it); without one the give-up is recorded alone
        self.engine: Any = None
        self._deployments: dict[str, UUID] = {}
        self._failing: dict[str, _Failing] = {}
        self._tokens: ResumeTokens | None = None
        self._local = threading.local()
        self._doorbells: list[str | None] = []
        self._doorbells_until = 0.0
        self._nudges: Any = None
        #: runs whose resume is queued on this launcher's thread: the nudger's retry leaves them to it (two
        #: resumes racing would resume the run's next suspension with the last one's token)
        self._nudging: set[str] = set()
        self._nudging_lock = threading.Lock()

    @contextmanager
    def _client(self) -> Iterator[Any]:
        """This thread's Prefect client, opened once and kept (opening one costs ~130 ms: a launch paid it
        every time); a client whose call failed is closed and opened again next time."""
        client = getattr(self._local, "client", None)
        if client is None:
            if callable(self.auth_string):
                self.auth_string = self.auth_string()
            opened = open_client(self.api_url, self.auth_string)
            client = self._local.client = opened
        try:
            yield client
        except BaseException:
            self._local.client = None
            with suppress(Exception):
                client.__exit__(None, None, None)
            raise

    def ring_executors(self, flow_run_id: str, queue: str | None = None) -> None:
        """Tell the executors this flow run is queued, in ``queue`` when known (their doorbells, read from the
        ledger at most once a second; a lost datagram costs only their poll)."""
        from flows.engine.outbox import ring
        from flows.ledger.schema import executors

        now = time.monotonic()
        if now >= self._doorbells_until:
            try:
                with self.ledger.read() as conn:
                    self._doorbells = [row.doorbell for row in conn.execute(sa.select(executors.c.doorbell))]
            except Exception:  # an old ledger, or a database away: the executors' poll finds the run
                self._doorbells = []
            self._doorbells_until = now + 1.0
        ring(self._doorbells, (flow_run_id if queue is None else f"{flow_run_id} {queue}").encode())

    @property
    def resume_tokens(self) -> ResumeTokens:
        """Signs the tokens this launcher resumes flow runs with (the site's secret, read once)."""
        if self._tokens is None:
            from flows.engine.secrets import site_secret
            from flows.language.library import project_root

            self._tokens = ResumeTokens(site_secret(self.root or project_root()))
        return self._tokens

    def deployment_id(self, client: Any, sop_id: str) -> UUID:
        """The deployment of an SOP (cached; ``sop serve`` creates them)."""
        if sop_id not in self._deployments:
            try:
                name = f"{sop_id}/{deployment_name(sop_id, self.pool)}"
                self._deployments[sop_id] = client.read_deployment_by_name(name).id
            except Exception as exc:
                if getattr(getattr(exc, "response", None), "status_code", None) == 401:
                    raise LaunchError(f"the Prefect server at {self.api_url} refuses us (401): run where `sop serve` "
                                      "keeps var/prefect-auth, or set PREFECT_API_AUTH_STRING") from None
                if type(exc).__name__ == "ObjectNotFound":  # the server answers; this SOP was never deployed there
                    raise LaunchError(f"SOP `{sop_id}` is not deployed to the Prefect server at {self.api_url} (new "
                                      "since the stack started?)", hint="restart `sop serve` (it deploys every SOP "
                                      "and its API and pages load the library), or in team mode run `sop deploy` and "
                                      "restart the API and executors") from None
                raise LaunchError(f"no Prefect deployment for SOP `{sop_id}`: is `sop serve` running? ({short(exc)})")\
                    from None
        return self._deployments[sop_id]

    def launch(self, run_id: str, *, replaces: str | None = None, reason: str | None = None) -> str:
        """Create the run's flow run in its class's work queue; returns the flow run id.

        ``replaces``: the run's flow run died (crashed or failed) while the run is open; the
        new one continues from the ledger (its idempotency key names the dead one, so two
        services replacing it at once create one).
        """
        with self.ledger.read() as conn:
            run = RunStore.run_row(conn, run_id)
            # a run that starts by waiting on its people: its flow run is born Suspended, as if it had run and
            # suspended at once (no executor spends a thread on it); the first report or timer resumes it
            waiting = replaces is None and not RunStore.has_automated_work(conn, run_id)
        assert run is not None
        suspension = run.suspends + 1
        key = f"sop-run-{run_id}" + (f"-after-{replaces}" if replaces else "")
        with self._client() as client, _retrying_once(), urgent(PRIORITY.get(run.sop_class)):
            deployment = self.deployment_id(client, run.sop_id)
            try:
                flow_run = client.create_flow_run_from_deployment(
                    deployment, parameters=json.loads(run.inputs),
                    name=f"{run.sop_id}-{run_id}", tags=[f"{RUN_TAG}{run_id}", run.sop_class, run.sop_id],
                    idempotency_key=key, state=born_suspended(suspension) if waiting else None)
                suspended = waiting and flow_run.state is not None and flow_run.state.is_paused() \
                    and flow_run.state.state_details.pause_key == pause_key(suspension)
                if suspended:
                    expect_resume_input(client, flow_run.id, suspension)
            except Exception as exc:  # its text may quote every parameter: keep the start of it
                raise LaunchError(f"Prefect did not create the flow run: {short(exc)}") from exc
        with self.ledger.transaction() as tx:
            if RunStore.flow_run_of(tx.conn, run_id) == str(flow_run.id):
                return str(flow_run.id)  # a launch racing this one got the same flow run (its idempotency key)
            store = RunStore(tx)
            store.set_run(run_id, flow_run_id=str(flow_run.id), **({"suspends": suspension} if suspended else {}))
            extra = {"replaces": replaces, "reason": reason} if replaces else {"suspended": True} if suspended else {}
            store.record(RecordKind.FLOW_RUN_CREATED, run_id, flow_run_id=str(flow_run.id), **extra)
        if not suspended:  # (a report made while a suspended one was created is flagged: the nudger resumes it)
            self.ring_executors(str(flow_run.id), flow_run.work_queue_name)
        log.info(kv("event=flow_run_created", run=run_id, flow_run=flow_run.id, replaces=replaces or "-",
                    suspended=suspended))
        return str(flow_run.id)

    def nudge(self, run_id: str) -> bool:
        """Resume the run's flow run if it is suspended; otherwise flag it for the nudger (it retries until the
        flow run is suspended, or has ended). True when resumed now."""
        outcome = self._resume(run_id)
        if outcome == BUSY:
            with self.ledger.transaction() as tx:
                RunStore(tx).set_nudge(run_id, True)
        return outcome == RESUMED

    def nudge_soon(self, run_id: str) -> None:
        """:meth:`nudge` without waiting on Prefect: the run is flagged in the ledger first (the nudger of
        ``sop serve`` retries flagged runs), then resumed on a thread of its own. The timer service and the
        people's requests call this, so that a slow or absent Prefect server holds up neither."""
        from concurrent.futures import ThreadPoolExecutor

        with self.ledger.transaction() as tx:
            RunStore(tx).set_nudge(run_id, True)
        if self._nudges is None:
            self._nudges = ThreadPoolExecutor(1, thread_name_prefix="nudges")
            _NUDGING.add(self)
        with self._nudging_lock:
            self._nudging.add(run_id)
        self._nudges.submit(self._nudge_flagged, run_id)

    def settle_nudges(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the resumes :meth:`nudge_soon` started; False when some are still
        under way (Prefect slow or away). Those runs stay flagged in the ledger: the nudger resumes them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._nudging_lock:
                if not self._nudging:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _nudge_flagged(self, run_id: str) -> None:
        try:
            self._settle(run_id)
        except Exception as exc:  # the nudger tries again
            log.warning(kv("event=nudge_failed", run=run_id, error=short(exc)))
        finally:
            with self._nudging_lock:
                self._nudging.discard(run_id)

    def _settle(self, run_id: str) -> bool:
        """Resume a flagged run's flow run; its flag is cleared unless the flow run is busy (try again later).
        True when it was resumed."""
        outcome = self._resume(run_id)
        if outcome != BUSY:
            with self.ledger.transaction() as tx:
                RunStore(tx).set_nudge(run_id, False)
        return outcome == RESUMED

    def _resume(self, run_id: str) -> str:
        """Resume the run's suspended flow run with the engine's token for its latest suspension.

        :data:`RESUMED`; :data:`BUSY` when it cannot be now (its flow run is running, queued, not created yet,
        or Prefect did not answer); :data:`SETTLED` when nothing is left to resume (its flow run has ended, or a
        closed run has none). A finished run's flow run is resumed too: it then ends as the run did.
        """
        with self.ledger.read() as conn:
            run = RunStore.run_row(conn, run_id)
        flow_run_id = run.flow_run_id if run is not None else None
        if not flow_run_id:
            return BUSY if run is not None and run.status == RunStatus.RUNNING else SETTLED
        try:  # one resume of a run at a time, across processes: on PostgreSQL two at once make Prefect's a 409
            with self.ledger.exclusive(f"resume {run_id}"), self._client() as client, \
                    urgent(PRIORITY.get(run.sop_class)):  # (a run: it has a flow run)
                flow_run = client.read_flow_run(UUID(flow_run_id))
                state = flow_run.state
                if state is not None and (state.is_crashed() or state.is_failed()):
                    if self._replace(run_id, flow_run_id, state):
                        return RESUMED  # (by a new flow run)
                    return BUSY if run is not None and run.status == RunStatus.RUNNING else SETTLED
                if state is not None and state.is_final():
                    return SETTLED
                if state is None or not state.is_paused():
                    return BUSY
                suspension = self._suspension(run_id, state)
                run_input = {"token": self.resume_tokens.sign(run_id, flow_run_id, suspension), "suspension": suspension}
                result = client.resume_flow_run(UUID(flow_run_id), run_input=run_input)
                if _schema_missing(result):
                    # Prefect stores the resume input's schema after the Suspended state: a live flow run is
                    # storing it now (storing it here too would fail the flow run's own store, a 409), so try
                    # again later; one suspended longer ago than that lost its process in between: store it as
                    # the flow would have, and resume again
                    if _age_s(state) < SCHEMA_GRACE_S:
                        return BUSY
                    log.warning("event=resume_schema_restored run=%s flow_run=%s suspension=%d", run_id,
                                flow_run_id, suspension)
                    expect_resume_input(client, UUID(flow_run_id), suspension)
                    result = client.resume_flow_run(UUID(flow_run_id), run_input=run_input)
        except Exception as exc:
            log.warning("event=resume_failed run=%s error=%s", run_id, exc)
            return BUSY
        accepted = getattr(result.status, "value", str(result.status)) == "ACCEPT"
        if accepted:
            self.ring_executors(flow_run_id)
        log.info("event=resume run=%s flow_run=%s accepted=%s", run_id, flow_run_id, accepted)
        return RESUMED if accepted else BUSY

    def _suspension(self, run_id: str, state: Any) -> int:
        """Which suspension of the run a paused state is: its pause key ``wait-<n>``, else the ledger's count
        (read after the state, so a flow run that suspended a moment ago is counted)."""
        key = getattr(state.state_details, "pause_key", None) or ""
        if key.startswith("wait-") and key[5:].isdigit():
            return int(key[5:])
        with self.ledger.read() as conn:
            return RunStore.suspends_of(conn, run_id)

    def _replace(self, run_id: str, flow_run_id: str, state: Any) -> bool:
        """The run is open but its flow run crashed or failed (Prefect lost it): start another."""
        with self.ledger.read() as conn:
            status, created = RunStore.flow_run_history(conn, run_id)
        if status != RunStatus.RUNNING or any("given_up" in d for d in created):
            return False
        reason = f"{state.type.value}: {state.message or state.name}"[:300]
        if sum(1 for d in created if d.get("replaces")) >= MAX_REPLACEMENTS:
            # the flow keeps dying (a bug, not Prefect's load): say so once, in the ledger and the log
            with self.ledger.transaction() as tx:
                RunStore(tx).record(RecordKind.FLOW_RUN_GIVEN_UP, run_id, flow_run_id=flow_run_id, reason=reason,
                                    given_up=MAX_REPLACEMENTS)
            log.error("event=flow_run_given_up run=%s flow_run=%s state=%s after=%d", run_id, flow_run_id, reason,
                      MAX_REPLACEMENTS)
            return False
        log.warning("event=flow_run_dead run=%s flow_run=%s state=%s: starting another", run_id, flow_run_id, reason)
        try:
            self.launch(run_id, replaces=flow_run_id, reason=reason)
        except Exception as exc:
            log.warning("event=relaunch_failed run=%s error=%s", run_id, exc)
            return False
        return True

    def replace_dead(self) -> int:
        """Open runs whose flow run crashed or failed (no report pending to notice): start another each."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        with self.ledger.read() as conn:
            bound = RunStore.open_flow_runs(conn)
        ids = list(bound)
        dead: list[Any] = []
        with self._client() as client:
            for start in range(0, len(ids), 200):  # the Prefect API returns at most 200 per call
                wanted = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(f) for f in ids[start:start + 200]]),
                                       state=FlowRunFilterState(type=FlowRunFilterStateType(
                                           any_=[StateType.CRASHED, StateType.FAILED])))
                dead.extend(client.read_flow_runs(flow_run_filter=wanted, limit=200))
        return sum(1 for flow_run in dead if self._replace(bound[str(flow_run.id)], str(flow_run.id), flow_run.state))

    def retry_nudges(self) -> int:
        """Resume every flagged run whose flow run is suspended now; returns how many."""
        with self.ledger.read() as conn:
            flagged = RunStore.nudged(conn)
        done = 0
        for run_id in flagged:
            with self._nudging_lock:
                if run_id in self._nudging:
                    continue
            done += self._settle(run_id)
        return done

    def launch_orphans(self, older_than: float = 5.0) -> int:
        """Create flow runs for open runs that have none (their launch failed), each when its backoff allows
        (:meth:`try_launch`); returns how many were tried."""
        limit = self.ledger.clock.now() - timedelta(seconds=older_than)
        with self.ledger.read() as conn:
            orphans = RunStore.unlaunched(conn, limit)
        now = self.clock()
        due = [run_id for run_id in orphans if run_id not in self._failing or self._failing[run_id].retry_at <= now]
        for run_id in due:
            self.try_launch(run_id)
        for run_id in set(self._failing) - set(orphans):  # launched elsewhere, closed, or given up
            del self._failing[run_id]
        return len(due)

    def try_launch(self, run_id: str) -> bool:
        """Create the run's flow run; on failure, try again later with exponential backoff.

        Logged once per change: the first failure, a different error, the give-up, a recovery
        (each with the error's first characters, never a whole refused parameter). At
        :data:`LAUNCH_ATTEMPTS` failures the run is marked and its owner paged (:meth:`give_up`);
        the tries go on, :data:`LAUNCH_RETRY_MAX_S` apart.
        """
        before = self._failing.get(run_id)
        try:
            self.launch(run_id)
        except Exception as exc:
            error = short(exc)
            attempts = before.attempts + 1 if before else 1
            delay = _Failing.delay(attempts)
            self._failing[run_id] = _Failing(attempts, error, self.clock() + delay)
            if attempts == LAUNCH_ATTEMPTS:
                self.give_up(run_id, error, attempts)
            elif before is None or before.error != error:
                log.warning(kv("event=launch_failed", run=run_id, attempt=attempts, retry_in=f"{delay:g}s",
                               error=error))
            return False
        if before is not None:
            self._failing.pop(run_id, None)
            log.info(kv("event=launch_recovered", run=run_id, after=before.attempts))
        return True

    def give_up(self, run_id: str, error: str, attempts: int) -> None:
        """The run's flow run cannot be created: mark it (``launch_given_up``) and page its owner ("cannot start
        automated steps: …"), once per run; people carry the run on, or cancel it. Without an engine (no
        pager) the mark alone is written."""
        reason = f"cannot start automated steps: {error}"
        if self.engine is not None:
            told = self.engine.automation_failed(run_id, reason, attempts)
        else:
            with self.ledger.transaction() as tx:
                store = RunStore(tx)
                told = not RunStore.launches_given_up(tx.conn, [run_id])
                if told:
                    store.record(RecordKind.LAUNCH_GIVEN_UP, run_id, reason=reason, attempts=attempts)
        if told:
            log.error(kv("event=launch_given_up", run=run_id, attempts=attempts, error=error,
                         then=f"owner paged; tried again every {LAUNCH_RETRY_MAX_S:g}s"))

    def cancel(self, run_id: str) -> None:
        """Cancel the run's flow run (best effort: the ledger already says cancelled)."""
        from prefect.states import Cancelled

        with self.ledger.read() as conn:
            flow_run_id = RunStore.flow_run_of(conn, run_id)
        if not flow_run_id:
            return
        try:
            with self._client() as client:
                client.set_flow_run_state(UUID(flow_run_id), Cancelled(message="cancelled in the SOP ledger"), force=True)
        except Exception as exc:  # the nudger resumes it later: the flow run then ends Cancelled, as the run did
            with self.ledger.transaction() as tx:
                RunStore(tx).set_nudge(run_id, True)
            log.warning(kv("event=cancel_failed", run=run_id, error=short(exc), then="the nudger ends it"))
