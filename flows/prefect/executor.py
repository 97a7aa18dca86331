"""``sop executor``: runs the SOP work pool's flow runs inside this long-lived process.

Prefect's process worker starts a Python process per flow run (3–7 s here, minutes under load)
that loads the SOP library and the engine, only for most runs to suspend at once on a person.
The executor keeps both loaded and runs each flow run on a bounded pool of threads with
Prefect's own engine (``prefect.flow_engine.run_flow`` on the existing flow run), so every run
is still a flow run of its SOP's deployment and every automated step a task run with its
retries and timeout, as the Prefect UI shows them.

How a flow run gets here:
- the pool's queues are read in Prefect's order (queue priority first: complaint before
  routine, FIFO within one), only as many runs as there are free threads, with plain reads
  (Prefect's worker poll writes on every call; it is kept for the 30 s Prefect beat);
- a run is taken by moving it to Pending, on the thread that will run it: the server accepts
  that once, so two executors never run the same flow run;
- the launcher rings the executors' doorbells (a UDP datagram, loopback) after creating or
  resuming a flow run, naming it and its queue: a run of a queue where none waits is taken at
  once (one read), else the queues are read in their order; otherwise every ``poll`` seconds.

Isolation: a ``command`` step still runs as its own OS process (argv, timeout, killed at its
timeout); an http step is cut at its own timeout on its own thread; an exception in one run
never leaves its thread. What a kill -9 leaves (runs Pending or Running with no process) is
found by :mod:`flows.prefect.rescue` from the beats this process writes in ``executors``
(the flow runs in flight): they are put back in the queue, once, and rerun from the ledger.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from flows.engine.outbox import BEAT_EVERY, Doorbell, Heartbeat, Stopping, process_name
from flows.language.library import Library
from flows.language.spec import PRIORITY
from flows.ledger import Ledger
from flows.ledger.schema import executors
from flows.logfmt import kv
from flows.prefect import inprocess
from flows.prefect.attempts import ATTEMPTS
from flows.prefect.launcher import short
from flows.prefect.urgency import urgent

log = logging.getLogger("sop.executor")

#: how often the executor tells Prefect it is alive (the work pool's "Workers" tab)
PREFECT_BEAT_EVERY = 30.0
#: seconds from SIGTERM that the flow runs in hand may take to reach a stopping point; with PUT_BACK_WAIT and the
#: way out, a stop takes at most 30 s (docs/running.md, "Stopping"; the units give 60)
DRAIN = 24.0
#: seconds the flow runs let go at the stop may take to be put back in their queue
PUT_BACK_WAIT = 3.0


class Executor:
    """Takes flow runs from a work pool and runs them on ``slots`` threads of this process."""

    def __init__(self, library: Library, ledger: Ledger, api_url: str, pool: str, *, slots: int = 8,
                 poll: float = 1.0, auth_string: str | Callable[[], str | None] | None = None,
                 name: str | None = None, doorbell_host: str = "127.0.0.1"):
        from flows.prefect import flow_run

        flow_run.use_library(library)  # every flow of this process runs on this library and its engine
        if not inprocess.without_suspension_observer():
            log.warning(kv("event=prefect_names_moved", kept="a suspension observer per flow run"))
        self.library, self.ledger, self.api_url, self.pool = library, ledger, api_url, pool
        self.slots, self.poll = slots, poll
        self.auth_string = auth_string
        self.name = name or f"executor-{process_name()}"
        self.bell = Doorbell(doorbell_host)
        self._in_flight: set[str] = set()
        #: flow runs being taken (Pending proposed, not yet accepted): they hold a thread, the beat does not name them
        self._taking: set[str] = set()
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(slots, thread_name_prefix="flow-run")
        self._flows: dict[UUID, str] = {}  # Prefect flow id → SOP id
        self.heartbeat = Heartbeat(ledger, self.name, self.bell.address, table=executors,
                                   extra=lambda: {"flow_runs": json.dumps(self.in_flight())})
        self.started = 0
        #: flow runs put back in their queue at the stop
        self.put_back = 0
        #: the highest queue (its rank in :meth:`_queues`, 0 = first) where runs may be waiting for a thread, None when
        #: none waits: a ring for a run of that queue or one below only says "look", and the next free thread takes
        #: what Prefect's queues give first (priority, then age); a ring for a run of a queue above it is taken at once
        self._waiting: int | None = 0
        self._queue_order: list[str] = []
        self._queues_until = 0.0

    def in_flight(self) -> list[str]:
        """The flow runs this process is running now (taken: Prefect accepted their Pending from this process)."""
        with self._lock:
            return sorted(self._in_flight)

    def free(self) -> int:
        """Threads free for another flow run (those being taken count as busy)."""
        with self._lock:
            return self.slots - len(self._in_flight) - len(self._taking)

    def _auth(self) -> str | None:
        if callable(self.auth_string):
            self.auth_string = self.auth_string()
        return self.auth_string

    def use_library(self, library: Library) -> None:
        """Run the flow runs taken from now on with ``library`` (``sop executor`` reloaded on SIGHUP); those in hand
        go on with what they hold. The pool and the Prefect server stay those the executor started with."""
        from flows.prefect import entrypoint, flow_run

        flow_run.use_library(library)
        entrypoint.forget_flows()  # each SOP's flow built again on it (a new SOP's, an edited one's parameters)
        self.library = library

    def run(self, stop: Stopping, *, drain: float = DRAIN, between: Callable[[], None] | None = None) -> None:
        """Take and run flow runs until ``stop`` is set; then take no more and let the runs in hand reach a
        stopping point (finish or suspend) for at most ``drain`` seconds from the stop (``stop.at``, SIGTERM's
        instant, when it has one). A retry's wait is not waited for (:mod:`flows.prefect.attempts`): a flow run
        between two attempts, or whose next attempt would start, is put back in its queue at once. What is still
        busy at the drain's end (an attempt that did not end) is rescued by a nudger once this process has gone
        (:mod:`flows.prefect.rescue`). ``between``: called between two looks (a reload)."""
        log.info(kv("event=executor_started", name=self.name, pool=self.pool, slots=self.slots))
        ATTEMPTS.resume()  # an executor that ran before in this process stopped them
        next_prefect_beat = 0.0
        look = True
        beating = threading.Event()
        # the beat has a thread of its own: a slow Prefect call in this loop must never make the executor look dead
        # (the nudger would then requeue the flow runs it is running)
        beats = threading.Thread(target=self._beat, args=(beating,), name="executor-beat", daemon=True)
        beats.start()
        try:
            # the client of every flow run started here (they run in copies of this context)
            with inprocess.shared_client(self.api_url, self._auth()) as client:
                try:
                    while not stop.is_set():
                        if between is not None:
                            self._safely("between", between)
                        now = time.monotonic()
                        if now >= next_prefect_beat:
                            self._safely("prefect_beat", lambda: self._prefect_beat(client))
                            next_prefect_beat = now + PREFECT_BEAT_EVERY
                        if look:
                            self._safely("take", lambda: self.take(client))
                        rung = self.bell.messages(self.poll)
                        look = not rung  # a poll
                        for message in rung:  # b"!": a thread freed here; else a flow run id, and its queue when known
                            flow_run_id, _, queue = message.decode(errors="replace").partition(" ")
                            if len(flow_run_id) != 36:
                                look = True
                                continue
                            look |= not self._safely(
                                "take_one",
                                lambda key=flow_run_id, queue=queue: self.take_one(client, key, queue or None))
                finally:
                    # inside the client's block: the flow runs in hand report through it until they stop (once it
                    # closes, a run that suspends or finishes meanwhile fails with "the client has been closed")
                    since = getattr(stop, "at", None)
                    self._drain((since if since is not None else time.monotonic()) + drain)
                    self._put_back(client, [key for key in self.in_flight() if ATTEMPTS.idle(key)])
        finally:
            left = self.in_flight()
            beating.set()
            beats.join(timeout=5)
            if left:
                self._safely("beat", self.heartbeat.beat)  # names only those still running: the rescue's
            else:
                self._safely("forget", self.heartbeat.forget)
            self.bell.close()
            log.info(kv("event=executor_stopped", name=self.name, started=self.started, put_back=self.put_back,
                        left=len(left)))

    def _drain(self, deadline: float) -> None:
        """Take no more, start no attempt; until ``deadline`` (monotonic), let the flow runs in hand reach a
        stopping point, but not a retry's wait."""
        ATTEMPTS.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
        while any(not ATTEMPTS.idle(key) for key in self.in_flight()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _put_back(self, client: Any, keys: list[str]) -> None:
        """Put these flow runs (each waiting, here, for an attempt that will not start) back in their queue, for
        another executor (or this one restarted) to run from the ledger; all in at most PUT_BACK_WAIT seconds, on a
        thread: a Prefect server away leaves them to the nudger's rescue, without holding the stop."""
        from flows.engine.store import RunStore
        from flows.prefect.rescue import put_back

        def move() -> None:
            with self.ledger.read() as conn:
                runs = RunStore.open_flow_runs(conn)
            for key in keys:
                flow_run = client.read_flow_run(UUID(key))
                if key in runs and put_back(self.ledger, client, runs[key], flow_run,
                                            f"{self.name} stopped before the step's next attempt; run again from "
                                            "the ledger", by=self.name):
                    self._release(key)
                    ATTEMPTS.forget(key)
                    self.put_back += 1

        if keys:
            mover = threading.Thread(target=lambda: self._safely("put_back", move), name="put-back", daemon=True)
            mover.start()
            mover.join(PUT_BACK_WAIT)

    def _prefect_beat(self, client: Any) -> None:
        """Tell Prefect this worker is alive and its queues are polled (the UI's "Workers" tab and queue status);
        the poll asks for runs due before 2000, so it takes none (:meth:`_queued` finds them)."""
        client.send_worker_heartbeat(self.pool, self.name, heartbeat_interval_seconds=PREFECT_BEAT_EVERY)
        client.get_scheduled_flow_runs_for_work_pool(self.pool, scheduled_before=datetime(2000, 1, 1, tzinfo=UTC))

    def _beat(self, stopped: threading.Event) -> None:
        """Write this executor's beat (and its flow runs in flight) every BEAT_EVERY seconds until ``stopped``."""
        while True:
            self._safely("beat", self.heartbeat.beat)
            if stopped.wait(BEAT_EVERY):
                return

    def take(self, client: Any) -> int:
        """Take as many queued flow runs as there are free threads, in Prefect's order; returns how many."""
        free = self.free()
        if free <= 0:
            self._waiting = 0  # what was rung or queued meanwhile waits for a thread, in the queues' order
            return 0
        queued, self._waiting = self._queued(client, free)
        return sum(self._start(client, flow_run) for flow_run in queued)

    def _queued(self, client: Any, free: int) -> tuple[list[Any], int | None]:
        """The flow runs due in the pool that ``free`` threads may take now, in Prefect's order: queue priority
        (complaint first), then scheduled start; and the highest queue where more may wait (None: none does).
        Each queue leaves a thread free for each queue above it (:meth:`headroom`): a storm of routine runs
        never holds the thread a complaint needs.
        Read with plain filters, queue by queue: Prefect's worker poll (``get_scheduled_flow_runs``) writes each
        queue's "last polled" every time, and on the embedded SQLite a write per look fought the flow runs' own
        writes in a storm; the poll itself is kept for the Prefect beat (every 30 s), so the UI still shows the
        queues ready."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterWorkQueueName,
            WorkPoolFilter,
            WorkPoolFilterName,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        due = datetime.now(UTC) + timedelta(seconds=0.5)
        found: list[Any] = []
        for rank, queue in enumerate(self._queues(client)):
            room = free - len(found) - min(rank, self.slots - 1)
            if room <= 0:
                # this queue and those below keep their headroom, and may have runs waiting (rings of higher queues
                # are still taken at once, by take_one); a freed thread, or the next poll, looks again
                return found, rank
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    work_queue_name=FlowRunFilterWorkQueueName(any_=[queue]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                    next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=due)),
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool])),
                sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=room + 1)  # one more: whether more wait
            found += runs[:room]
            if len(runs) > room:
                return found, rank
        return found, None

    def headroom(self, queue: str | None) -> int | None:
        """Threads a run of ``queue`` must leave free: one per queue above it (0 for the first), but never all of
        them; None when the queue is not one this executor takes from now (paused, or its pool is)."""
        if queue not in self._queue_order:
            return None
        return min(self._queue_order.index(queue), self.slots - 1)

    def _queues(self, client: Any) -> list[str]:
        """The pool's queues that are not paused, highest priority first (read again every 30 s; none while the
        pool is paused)."""
        if time.monotonic() >= self._queues_until:
            pool = client.read_work_pool(self.pool)
            queues = client.read_work_queues(work_pool_name=self.pool)
            self._queue_order = [] if pool.is_paused else [
                q.name for q in sorted(queues, key=lambda q: (q.priority, q.name)) if not q.is_paused]
            self._queues_until = time.monotonic() + PREFECT_BEAT_EVERY
        return self._queue_order

    def take_one(self, client: Any, flow_run_id: str, queue: str | None = None) -> bool:
        """Take the flow run a launcher rang about (of ``queue``, when the ring said), without reading the queues:
        when a thread is free and no run waits in its queue or one above, it would be first anyway. False when it
        must wait its turn (the queues decide later, by priority, then age); True otherwise: a thread reads it and
        takes it, or lets it be (another executor took it, its queue is paused, or the threads left are kept for
        the queues above it)."""
        rank = self._queue_order.index(queue) if queue in self._queue_order else None
        if queue is not None and rank is None:
            return False  # a queue this executor does not know (yet), or paused: the queues decide
        if self.free() <= 0 or (self._waiting is not None and (rank is None or self._waiting <= rank)):
            self._waits(rank or 0)
            return False
        if queue is not None and self.free() <= self.headroom(queue):  # type: ignore[operator]
            self._waits(rank)  # kept for the queues above it; a later ring of this queue waits behind it
            return True
        if self._hold(flow_run_id):
            self._threads.submit(contextvars.copy_context().run, self._take_rung, client, flow_run_id)
        return True

    def _waits(self, rank: int | None) -> None:
        """A run of the queue of ``rank`` waits for a thread: later rings of that queue or those below wait behind it."""
        if rank is not None:
            self._waiting = rank if self._waiting is None else min(self._waiting, rank)

    def _take_rung(self, client: Any, flow_run_id: str) -> None:
        """On a thread held for it: read the flow run that rang and take it when it is still to run and its queue
        may have this thread."""
        try:
            flow_run = client.read_flow_run(UUID(flow_run_id))  # a read: no write turn to wait for
        except Exception as exc:
            self._let_go(flow_run_id, "take_read", exc)
            return
        headroom = self.headroom(flow_run.work_queue_name) if flow_run.state and flow_run.state.is_scheduled() else None
        if headroom is None or self.free() < headroom:  # this thread not counted: it is held for the run
            # taken by another executor, not to run, its queue paused, or the threads left are kept for queues above
            # it: nothing to look for now (a freed thread, or the next poll, reads the queues again)
            self._release(flow_run_id)
            return
        self._take_and_execute(client, flow_run)

    def _start(self, client: Any, flow_run: Any) -> int:
        """Hold a thread for a queued flow run and take it there (:meth:`_take_and_execute`); returns 1 when held.
        Taking is a write on the Prefect server: on threads, a storm's takes wait on it side by side, not one
        after another in the loop that reads the rings."""
        if not self._hold(str(flow_run.id)):
            return 0
        self._threads.submit(contextvars.copy_context().run, self._take_and_execute, client, flow_run)
        return 1

    def _hold(self, key: str) -> bool:
        """Count a thread as busy for flow run ``key`` until it is taken or let go; False when it already has one."""
        with self._lock:
            if key in self._in_flight or key in self._taking:
                return False
            self._taking.add(key)
            return True

    def _take_and_execute(self, client: Any, flow_run: Any) -> None:
        """Move a queued flow run to Pending (Prefect accepts that once: two executors never both run it), then
        run it here; every Prefect call on its way says its queue's priority."""
        with urgent(PRIORITY.get(flow_run.work_queue_name)):
            self._take_then_execute(client, flow_run)

    def _take_then_execute(self, client: Any, flow_run: Any) -> None:
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state_sync

        key = str(flow_run.id)
        try:
            flow_run.state = propose_state_sync(client, Pending(), flow_run_id=flow_run.id)
        except Abort:  # another executor took it first
            self._let_go(key)
            return
        except Exception as exc:
            self._let_go(key, "take", exc)
            return
        if not flow_run.state.is_pending():
            self._let_go(key)
            return
        with self._lock:  # Prefect accepted: from now on its beat names it (a rescue waits GRACE, ≫ a beat)
            self._taking.discard(key)
            self._in_flight.add(key)
        self.started += 1
        self._execute(client, flow_run)

    def _let_go(self, key: str, what: str = "", exc: Exception | None = None) -> None:
        """Free the thread held for ``key`` and have the loop look at the queues again."""
        if exc is not None:
            log.warning(kv(f"event={what}_failed", flow_run=key, error=short(exc)))
        self._release(key)
        self.bell.ring_self()

    def _release(self, key: str) -> None:
        with self._lock:
            self._in_flight.discard(key)
            self._taking.discard(key)

    def _execute(self, client: Any, flow_run: Any) -> None:
        """Run one flow run to its end or its next suspension (Prefect's engine, in this thread)."""
        from prefect.flow_engine import run_flow

        key = str(flow_run.id)
        began = time.monotonic()
        try:
            flow = self._flow(client, flow_run)
            state = run_flow(flow, flow_run=flow_run, return_type="state")
            log.info(kv("event=flow_run_left", flow_run=key, state=getattr(state, "name", "?"),
                        ms=int((time.monotonic() - began) * 1000)))
        except BaseException as exc:  # noqa: BLE001 - one run's failure never reaches the others
            if _suspended(exc):
                log.info(kv("event=flow_run_left", flow_run=key, state="Suspended",
                            ms=int((time.monotonic() - began) * 1000)))
            else:
                log.error(kv("event=flow_run_error", flow_run=key, error=short(exc)))
                self._crashed(client, flow_run, exc)
        finally:
            ATTEMPTS.forget(key)
            self._let_go(key)  # a thread is free: look at the queue now

    def _flow(self, client: Any, flow_run: Any) -> Any:
        """The flow of this run's SOP (built once per process from its library)."""
        from flows.prefect import entrypoint
        from flows.prefect.names import python_name

        if flow_run.flow_id not in self._flows:
            self._flows[flow_run.flow_id] = client.read_flow(flow_run.flow_id).name
        return getattr(entrypoint, python_name(self._flows[flow_run.flow_id]))

    def _crashed(self, client: Any, flow_run: Any, exc: BaseException) -> None:
        """Prefect's engine itself failed (not a step: those end as task states): mark the flow run Crashed,
        so the nudger replaces it."""
        from prefect.states import Crashed

        try:
            client.set_flow_run_state(flow_run.id, Crashed(message=f"executor: {short(exc)}"), force=False)
        except Exception as error:
            log.warning(kv("event=crash_not_recorded", flow_run=str(flow_run.id), error=short(error)))

    def _safely(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as exc:
            log.warning(kv(f"event=executor_{what}_failed", error=short(exc)))
            return None


def _suspended(exc: BaseException) -> bool:
    from prefect.exceptions import Pause

    return isinstance(exc, Pause)
