"""The notification outbox: a transition's pages are written in its own transaction.

A transition (a run started, a step assigned, a ladder level fired…) decides its pages
inside its ledger transaction. They are written to the ``outbox`` table there, so a page
exists exactly when its transition does: a process that dies after the commit loses no
page. Who delivers them:

- **a pager process** (``sop pager``; ``sop serve`` starts one) when one is alive: it says
  so in ``pagers`` every :data:`BEAT_EVERY` seconds, and other processes then leave their
  pages unclaimed for it. Rendering and delivery then cost the API and the timer service
  nothing: an alert storm's answers do not wait behind its pages. After its commit, the
  queuing process rings the pager's *doorbell* (a UDP datagram to the address in its
  ``pagers`` row, loopback by default), so the page is taken at once; the pager also looks
  every ``poll`` seconds, so a lost datagram (or a pager on another host) costs only latency.
- **the committing process** otherwise (a CLI command with no service running, tests): it
  claims the rows in the same transaction and delivers them after the commit, as before.

Each claim is a lease (:data:`LEASE`). A row still not done when its lease ends (its
process died mid-delivery) is claimed again by a pager process. So delivery is at least
once: a page whose process died after sending but before recording may be sent twice,
never lost. Leases and heartbeats use the wall clock, never a run's compressed clock.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.ledger import Ledger, Tx
from flows.ledger.outage import Outage, database_away
from flows.ledger.schema import outbox, pagers

if TYPE_CHECKING:
    from flows.engine.change import Page
    from flows.engine.transitions import Engine

log = logging.getLogger("sop.outbox")


class Stopping(Protocol):
    """What tells a loop to stop: a ``threading.Event``, or the SIGTERM flag of ``flows.runtime.shutdown``."""

    def is_set(self) -> bool: ...

#: how long a claim holds before another pager process may take the row
LEASE = timedelta(seconds=120)
#: a pager process beats this often …
BEAT_EVERY = 2.0
#: … and counts as alive this long after its last beat
ALIVE_FOR = timedelta(seconds=10)
#: a row that failed to render this many times is set aside (done, with its error)
MAX_ATTEMPTS = 5

_INSERT = outbox.insert()
_OPEN = (outbox.c.done_at.is_(None)) & (outbox.c.attempts < MAX_ATTEMPTS)


def wall() -> datetime:
    """The real time (leases and heartbeats never follow a run's compressed clock)."""
    return datetime.now(UTC)


def process_name() -> str:
    """``host:pid``: who holds a claim, in the ledger and the logs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claimable(now: datetime) -> Any:
    return _OPEN & (outbox.c.claimed_until.is_(None) | (outbox.c.claimed_until < now))


_PEEK = sa.select(outbox.c.id).where(_claimable(sa.bindparam("now"))).limit(1)
#: most urgent first, then in queue order (docs/notifications.md "Urgent first")
_URGENT_FIRST = (outbox.c.urgency, outbox.c.id)
_ALIVE = sa.select(pagers.c.name, pagers.c.doorbell).where(pagers.c.beat_at > sa.bindparam("since"))


def queue(tx: Tx, pages: list[Page], claimed_by: str | None) -> None:
    """Write ``pages`` to the outbox in ``tx`` (the transition's transaction).

    ``claimed_by``: this process delivers them itself after the commit, and sets each page's
    ``outbox_id`` (recording the delivery marks that row done). None leaves them to a pager
    process, which reads them back with their ids: they are inserted together, with the
    transaction's commit where they can be (``Tx.defer``), and their ``outbox_id`` stays None here.
    """
    now = wall()
    until = now + LEASE if claimed_by else None
    rows = [{"run_id": page.run_id, "step_id": page.step_id, "kind": page.kind,
             "targets": json.dumps(page.targets), "level": json.dumps(page.level) if page.level else None,
             "on_call": json.dumps(page.on_call) if page.on_call else None, "urgency": page.urgency,
             "queued_at": now, "claimed_by": claimed_by, "claimed_until": until,
             "attempts": 1 if claimed_by else 0} for page in pages]
    if claimed_by is None:
        tx.defer(_INSERT, rows)
        for page in pages:
            page.deferred = True
        return
    for page, row in zip(pages, rows, strict=True):
        page.outbox_id = tx.conn.execute(_INSERT, row).inserted_primary_key[0]
        page.deferred = False


def pager_alive(conn: Connection) -> bool:
    """True when a pager process has beaten within :data:`ALIVE_FOR`."""
    return bool(living_pagers(conn))


def living_pagers(conn: Connection) -> dict[str, str | None]:
    """The pager processes that beat within :data:`ALIVE_FOR`: name → doorbell address."""
    return {r.name: r.doorbell for r in conn.execute(_ALIVE, {"since": wall() - ALIVE_FOR})}


_ringer: socket.socket | None = None
_ringer_lock = threading.Lock()


def ring(doorbells: list[str | None], what: bytes = b"!") -> None:
    """Tell service processes there is work (one UDP datagram each, saying ``what``; a lost one costs only
    their poll)."""
    global _ringer
    for address in doorbells:
        if not address:
            continue
        host, _, port = address.rpartition(":")
        try:
            with _ringer_lock:
                if _ringer is None:
                    _ringer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    _ringer.setblocking(False)
                _ringer.sendto(what, (host, int(port)))
        except (OSError, ValueError):
            pass


class Doorbell:
    """A service process's UDP socket on ``host`` (loopback by default): a datagram means "look now"."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.address = "{}:{}".format(*self.sock.getsockname())

    def wait(self, timeout: float) -> bool:
        """Until a ring or ``timeout``; True when rung (every waiting datagram is taken)."""
        return bool(self.messages(timeout))

    def messages(self, timeout: float) -> list[bytes]:
        """Until a ring or ``timeout``: what every waiting datagram said (empty when none came)."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        said: list[bytes] = []
        while ready:
            try:
                said.append(self.sock.recv(512))
            except BlockingIOError:
                break
        return said

    def ring_self(self) -> None:
        """Wake this doorbell's own :meth:`wait` (another thread of the process has work for it)."""
        ring([self.address])

    def close(self) -> None:
        self.sock.close()


_MARK_DONE = outbox.update().where(outbox.c.id.in_(sa.bindparam("_ids", expanding=True)))


#: PostgreSQL's: its ids one array parameter, so that it is built once whatever their number (``Tx.defer``)
_MARK_DONE_ANY = outbox.update().where(outbox.c.id == sa.func.any(sa.bindparam("_ids")))


def mark_done(conn: Connection, ids: list[int], error: str | None = None) -> None:
    """These rows are handled: their deliveries are recorded (or they could not be rendered)."""
    if ids:
        conn.execute(_MARK_DONE, {"_ids": ids, "done_at": wall(), "error": error})


def mark_done_in(tx: Tx, ids: list[int], error: str | None = None) -> None:
    """:func:`mark_done` in a write transaction that reads the outbox no more: on PostgreSQL it goes with the
    ``COMMIT`` (``Tx.defer``: a pager's delivery records in one round trip less, docs/benchmarks.md "A new run")."""
    if not ids:
        return
    if tx.driver is None or tx.sqlite:
        mark_done(tx.conn, ids, error)
    else:
        tx.defer(_MARK_DONE_ANY, [{"_ids": ids, "done_at": wall(), "error": error}])


def claim(ledger: Ledger, name: str, limit: int = 100) -> list[Page]:
    """Take up to ``limit`` claimable rows for :data:`LEASE` as pages, most urgent first (``urgency``: the SOP's
    class, then pages that ask for work before informational ones), then oldest first: under a backlog a
    complaint's page goes before an outage's queued earlier.

    A read first: an empty outbox costs no write lock, so polling it never holds up a
    transition of another process.
    """
    from flows.engine.change import Page

    now = wall()
    with ledger.read() as conn:
        if conn.execute(_PEEK, {"now": now}).first() is None:
            return []
    with ledger.transaction() as tx:
        rows = tx.conn.execute(sa.select(outbox).where(_claimable(now)).order_by(*_URGENT_FIRST).limit(limit)).all()
        if not rows:
            return []
        tx.conn.execute(outbox.update().where(outbox.c.id.in_([r.id for r in rows]))
                        .values(claimed_by=name, claimed_until=now + LEASE, attempts=outbox.c.attempts + 1))
    pages = []
    for row in rows:
        if row.claimed_by is not None:
            log.warning("event=outbox_reclaimed id=%s run=%s kind=%s from=%s attempts=%d", row.id, row.run_id,
                        row.kind, row.claimed_by, row.attempts + 1)
        pages.append(Page(row.kind, row.run_id, row.step_id, json.loads(row.targets),
                          json.loads(row.level) if row.level else None, outbox_id=row.id,
                          on_call=json.loads(row.on_call) if row.on_call else None, urgency=row.urgency))
    return pages


def backlog(ledger: Ledger) -> dict[str, Any]:
    """Pages not yet handled: how many, and when the oldest was queued (for ``sop status``)."""
    with ledger.read() as conn:
        row = conn.execute(sa.select(sa.func.count(), sa.func.min(outbox.c.queued_at)).where(_OPEN)).one()
        alive = pager_alive(conn)
    return {"pending": row[0], "oldest": row[1], "pager_alive": alive}


def wait_delivered(ledger: Ledger, run_id: str, timeout: float = 10.0) -> bool:
    """Until every page of ``run_id`` queued so far is handled (True), or ``timeout`` seconds (False)."""
    query = sa.select(sa.func.count()).select_from(outbox).where((outbox.c.run_id == run_id) & _OPEN)
    deadline = time.monotonic() + timeout
    while True:
        with ledger.read() as conn:
            if not conn.execute(query).scalar_one():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class Heartbeat:
    """A service process's row (``pagers`` by default; ``executors`` for ``sop executor``): beat while alive,
    removed on a clean stop. ``extra`` adds values to every beat (an executor's in-flight flow runs)."""

    def __init__(self, ledger: Ledger, name: str, doorbell: str | None = None, *, table: sa.Table = pagers,
                 extra: Callable[[], dict[str, Any]] | None = None):
        self.ledger, self.name, self.doorbell, self.table = ledger, name, doorbell, table
        self.extra = extra or dict
        self.started_at = wall()

    def beat(self) -> None:
        """Write this process's row: its beat, and who it is (a process restarted under the same name, as `sop
        serve` restarts its executors, takes the row over: its pid and doorbell, not the dead one's)."""
        now, table = wall(), self.table
        values = {"beat_at": now, "pid": os.getpid(), "started_at": self.started_at, "doorbell": self.doorbell,
                  **self.extra()}
        with self.ledger.transaction() as tx:
            done = tx.conn.execute(table.update().where(table.c.name == self.name).values(**values)).rowcount
            if not done:
                tx.conn.execute(table.insert().values(name=self.name, **values))

    def forget(self) -> None:
        with self.ledger.transaction() as tx:
            tx.conn.execute(self.table.delete().where(self.table.c.name == self.name))


class Drainer:
    """The loop of a pager process: beat, claim, hand pages to the engine's pager, send the digests due.

    It looks at the outbox when its doorbell rings, and every ``poll`` seconds anyway (a
    read, no lock). It stops claiming while more than ``max_backlog`` of its pages wait to
    be rendered, so a claim never outlives its lease in memory.
    """

    def __init__(self, engine: Engine, *, poll: float = 0.1, batch: int = 100, max_backlog: int = 500,
                 name: str | None = None, doorbell_host: str = "127.0.0.1"):
        self.engine = engine
        self.pager = engine.pager
        self.poll, self.batch, self.max_backlog = poll, batch, max_backlog
        self.name = name or process_name()
        self.bell = Doorbell(doorbell_host)
        self.heartbeat = Heartbeat(engine.ledger, self.name, self.bell.address)
        self.trouble = Outage(log, "outbox_claim_failed", poll)
        self.claimed = 0

    def run(self, stop: Stopping) -> None:
        """Until ``stop`` is set (looked at between two looks at the outbox); then hand over:
        heartbeat removed, pages in hand delivered."""
        log.info("event=pager_started name=%s poll_ms=%d", self.name, int(self.poll * 1000))
        try:
            self.serve(stop)
        finally:
            self.hand_over()

    def serve(self, stop: Stopping) -> None:
        """Beat, claim and hand pages to the engine's pager until ``stop`` is set; may be called again (a reload
        between two: :meth:`use`)."""
        next_beat = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_beat:
                self._safely(self.heartbeat.beat)
                next_beat = time.monotonic() + BEAT_EVERY
            try:
                got = self.drain_once()
                self.send_digests()
                self.trouble.ok()
            except Exception as exc:  # noqa: BLE001 - the next look runs; Outage logs it as it deserves
                self.bell.wait(self.trouble.failed(exc))
                continue
            if got < self.batch:
                self.bell.wait(self.poll)

    def use(self, engine: Engine) -> None:
        """Claim and render with ``engine`` from now on (``config/`` reloaded: its people's contacts), between two
        calls of :meth:`serve`: the heartbeat goes on, so the other processes never see this pager gone."""
        self.engine, self.pager = engine, engine.pager
        self.heartbeat.ledger = engine.ledger

    def hand_over(self) -> None:
        """Heartbeat removed (the others deliver their own pages again at once), doorbell closed."""
        self._safely(self.heartbeat.forget)
        self.bell.close()
        log.info("event=pager_stopped name=%s claimed=%d", self.name, self.claimed)

    def drain_once(self) -> int:
        """Claim what is claimable and hand it to the pager; returns how many pages."""
        if self.pager.backlog() >= self.max_backlog:
            return 0
        pages = claim(self.engine.ledger, self.name, self.batch)  # a failure: the loop's Outage says it
        if pages:
            self.claimed += len(pages)
            self.pager.render_now(self.engine, pages)
        return len(pages)

    def send_digests(self) -> int:
        """Send the digests that are due (``flows.engine.digest``): this process kept their items. A clock read
        when none is due."""
        digests = self.pager.digests
        return digests.send_due() if digests is not None else 0

    def _safely(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - the loop goes on; a database away is said by its Outage
            if not database_away(exc):
                log.exception("event=pager_heartbeat_failed")
