"""The engine's side of notifications: who is meant, what they read, and the record of delivery.

The engine decides *that* a page goes out (a :class:`flows.engine.change.Page`); this module
resolves ladder words (assignee, owner, lead, backup) to people, fills the context the
templates read (``flows.engine.page_context``), hands it to the ``notifications`` package, and writes every
per-destination result to the ledger. Delivery runs on a thread pool: a slow or failed
destination never holds up the engine, and never fails a run.

Pages come through the outbox (``flows.engine.outbox``): :meth:`Pager.queue` writes them in the
transition's transaction, claimed by this process, or left to a pager process when one is
alive; :meth:`Pager.send_all` then delivers the claimed ones, and recording a page's
deliveries (``flows.engine.page_records``) marks its outbox row done in the same transaction.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple

from flows.clock import scaled
from flows.engine import digest, outbox, participants
from flows.engine.digest import Digests
from flows.engine.oncall import on_call_now, resolve_targets
from flows.engine.page_context import page_context
from flows.engine.page_records import prepare_page, write_pages
from flows.engine.secrets import SecretUnsafe
from flows.engine.view import RunView
from flows.language.config import Site
from flows.language.oncall import OnCall
from flows.language.steps.base import StepBase
from flows.language.steps.human import HumanStep
from flows.ledger import Ledger

log = logging.getLogger("sop.paging")

#: pages whose delivery records are written in one ledger transaction
WRITE_CHUNK = 20
#: seconds between two looks at whether a pager process is alive (pages are then left to it)
ALIVE_CHECK_S = 1.0


class Batched(NamedTuple):
    """A page's delivery waiting to be recorded (by name: the bench and the pager build them apart)."""

    run_id: str
    step_id: str | None
    kind: str
    results: list[Any]
    outbox_id: int | None = None
    #: the items kept for digests, and more facts for its record (``not_sent``: whom a drill's page left out,
    #: ``flows.engine.participants``); shared defaults, never changed in place
    kept: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}


class Pager:
    """Sends the engine's pages and records the results (see the module docstring)."""

    def __init__(self, site: Site, ledger: Ledger, dispatcher: Any = None, *, background: bool = False,
                 drains: bool = False, links: Any = None):
        self.site = site
        self._links = links
        #: where :attr:`links` comes from when first needed (the engine's: reading the site's secret only then)
        self.links_from: Callable[[], Any] | None = None
        self.ledger = ledger
        self._dispatcher = dispatcher
        #: who claims outbox rows (``host:pid``)
        self.name = outbox.process_name()
        #: this is a pager process's pager: it delivers everything, it never leaves pages to another
        self.drains = drains
        #: when the pagers table was last read, and the doorbells of the pager processes alive then
        self._alive: tuple[float, list[str | None]] = (-1e9, [])
        #: pages handed to send_all and not yet rendered (a pager process stops claiming above a bound)
        self._queued = 0
        #: render pages on a thread of their own (``sop serve``, the API): a request or a timer
        #: returns once its transition is committed, and the pages follow in order
        self._background: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="pager") if background else None)
        #: a pager process's digests (it keeps informational pages for people with ``digest``; nobody else does)
        self.digests = Digests(self) if drains else None
        #: delivery results waiting for the pager thread to write them, several pages per transaction
        self._pending: list[Batched] = []
        self._pending_lock = threading.Lock()
        self._flush_queued = False

    @property
    def dispatcher(self) -> Any:
        if self._dispatcher is None:
            from notifications import Dispatcher

            self._dispatcher = Dispatcher(workers=8, timeout=5.0, retries=2, backoff=0.5,
                                          inbox_dir=self.site.settings.inbox_dir)
        return self._dispatcher

    def queue(self, tx: Any, pages: list[Any]) -> None:
        """Write pages to the outbox in their transition's transaction (``tx``).

        Claimed by this process, which delivers them after the commit; or, while a pager
        process is alive (checked at most once a second), left unclaimed for it.
        """
        outbox.queue(tx, pages, None if self._defer(tx.conn) else self.name)

    def _defer(self, conn: Any) -> bool:
        if self.drains:
            return False
        checked, doorbells = self._alive
        now = time.monotonic()
        if now - checked >= ALIVE_CHECK_S:
            doorbells = list(outbox.living_pagers(conn).values())
            self._alive = (now, doorbells)
        return bool(doorbells)

    def backlog(self) -> int:
        """Pages handed over and not yet rendered."""
        return self._queued

    def send_all(self, engine: Any, pages: list[Any]) -> None:
        """Send the pages of one transition this process claimed (each run read once); never raises.

        Pages left to a pager process are not sent here: its doorbell is rung instead.
        """
        mine = [p for p in pages if not getattr(p, "deferred", False)]
        if len(mine) < len(pages):
            outbox.ring(self._alive[1])
        pages = mine
        if not pages:
            return
        with self._pending_lock:
            self._queued += len(pages)
        background = self._background
        if background is not None:
            try:
                background.submit(self._send_all, engine, pages)
                return
            except RuntimeError:  # shut down: send them here rather than lose them
                pass
        self._send_all(engine, pages)

    def render_now(self, engine: Any, pages: list[Any]) -> None:
        """Render the pages on this thread and hand them to the delivery threads (a pager process's loop:
        one thread hop less than :meth:`send_all`); never raises."""
        with self._pending_lock:
            self._queued += len(pages)
        self._send_all(engine, pages)

    def _send_all(self, engine: Any, pages: list[Any]) -> None:
        views: dict[str, RunView] = {}
        for page in pages:
            try:
                if page.run_id not in views:
                    views[page.run_id] = engine.view(page.run_id)
                self.send(engine, page, views[page.run_id])
            except Exception as exc:  # a page must never break a transition that already committed
                self._set_aside(page, f"{type(exc).__name__}: {exc}")
            finally:
                with self._pending_lock:
                    self._queued -= 1

    def _set_aside(self, page: Any, error: str) -> None:
        """A page that failed before delivery (its targets, recipients or context): it is not retried.

        It is recorded as a delivery that failed, to its targets as written, with the error
        (masked): a ``notification`` record and a ``deliveries`` row, so `sop status` counts it
        and `sop audit show` lists it. Its outbox row is done, with the same error.
        """
        from notifications import DeliveryResult, redact

        text = redact(error)[:2000]  # the error may quote a target or a URL: masked like every delivery error
        log.error("event=page_failed kind=%s run=%s step=%s error=%r", page.kind, page.run_id, page.step_id or "-", text)
        log.debug("event=page_failed_traceback run=%s\n%s", page.run_id, redact(traceback.format_exc()))
        result = DeliveryResult(recipient=redact(", ".join(page.targets))[:120] or "-", recipient_kind="targets",
                                destination="—", ok=False, error=f"not sent, the page failed before delivery: {text}",
                                attempts=0, latency=0.0, at=self.ledger.clock.now(), kind=page.kind)
        outbox_id = getattr(page, "outbox_id", None)
        try:
            prepared = [prepare_page(page.run_id, page.step_id, page.kind, [result])]
            with self.ledger.transaction() as tx:
                write_pages(tx, prepared)
                if outbox_id is not None:
                    outbox.mark_done_in(tx, [outbox_id], error=text)
        except Exception:
            log.exception("event=page_set_aside_record_failed run=%s kind=%s outbox=%s", page.run_id, page.kind,
                          outbox_id)

    def close(self) -> None:
        """Wait for pages and deliveries in flight (a CLI process calls this before it exits); then, in a service,
        the checkpoint its last writes wait for (``Ledger.settle``)."""
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None  # pages sent after this are sent at once, not lost
        if self._dispatcher is not None:
            self._dispatcher.close(wait=True)
            self._dispatcher = None
        self._flush()  # results that came in while the pager thread stopped
        self.ledger.settle()

    def send(self, engine: Any, page: Any, view: RunView | None = None) -> Any:
        """Render and deliver one page (about ``view``, read after the transition); returns the delivery future."""
        from notifications import recipients

        view = view if view is not None else engine.view(page.run_id)
        step = view.sop.step(page.step_id) if page.step_id else None
        on_call = self.decided(page)
        holder = view.steps[step.id].get("claimed_by") if step is not None else None
        names = resolve_targets(page.targets, view.sop, step, self.site, on_call=on_call, holder=holder)
        people = recipients(names, self.site, on_call=on_call)
        # who asked for help is not asked to help (unless nobody else is); who posted an update is not sent it
        author = (page.level or {}).get({"escalated": "asked_by", "status_update": "by"}.get(page.kind, ""))
        if author:
            others = [p for p in people if not (p.kind == "person" and p.id == author)]
            people = others if others or page.kind == "status_update" else people
        people, not_sent = participants.left_out(view, people)  # a drill's page reaches the people taking part
        facts = {"not_sent": not_sent} if not_sent else {}
        now = engine.clock.now()
        ctx = self.context(view, page, step, now, on_call)
        render = self._renderer(page, ctx, now)
        kept: list[dict[str, Any]] = []
        if self.digests is not None:  # a pager process: it sends the digests it keeps
            people, kept = digest.keep(self.site, page, ctx, people, render, now)
        outbox_id = getattr(page, "outbox_id", None)
        on_done = lambda results: self._recorded(page.run_id, page.step_id, page.kind, results, outbox_id,  # noqa: E731
                                                 kept, facts)
        if (kept or not_sent) and not people:  # kept for digests, or nobody in the drill: only the record to write
            on_done([])
            done: Future[list[Any]] = Future()
            done.set_result([])
            return done
        return self.dispatcher.submit(render, people, on_done=on_done)

    def _renderer(self, page: Any, ctx: Any, now: datetime) -> Callable[[Any], Any]:
        """Each recipient's message. An escalation that reaches the late person themselves (the owner role is
        the assignee role, or a rung names the assignee beside others) tells them their step is late, as a
        reminder or an overdue page would: not "escalated to you … reach <them>, or take it over yourself"."""
        from notifications import render_for

        render = render_for(page.kind, ctx, site=self.site)
        step, level = ctx.step, ctx.level
        if page.kind != "escalated" or step is None or not step.holder or \
                (level is not None and (level.hold_reason or level.asked_by)):
            return render
        late = step.holder
        own = render_for("overdue" if step.due_at is not None and now >= step.due_at else "reminder", ctx,
                         site=self.site)
        return lambda recipient: own(recipient) if recipient.kind == "person" and recipient.id == late \
            else render(recipient)

    def decided(self, page: Any) -> Callable[[str], OnCall]:
        """Who the page's roles meant when it was decided (its ``on_call``); a role it does not hold (a
        page queued before rotations were recorded) is resolved now."""
        decided = getattr(page, "on_call", None) or {}
        answers: dict[str, OnCall] = {}

        def lookup(role: str) -> OnCall:
            if role not in answers:
                answers[role] = (OnCall.from_facts(decided[role]) if role in decided
                                 else on_call_now(self.site, self.ledger, role))
            return answers[role]

        return lookup

    def broadcast(self, run_id: str, step_id: str, targets: list[str], title: str, body: str,
                  sop_class: str = "routine", *, drill_speed: float | None = None) -> dict[str, bool]:
        """A notify step's own message (with its SOP's urgency), delivered now and recorded; whether
        each recipient got it (a person counts once however many of their contacts were tried). A drill's (a
        ``drill: live`` step; ``drill_speed``, its pace) is marked as its pages are: ``[DRILL]`` and the drill's first
        line."""
        from notifications import Message, lane_outcomes, recipients
        from notifications.templating import drill_note
        from notifications.urgency import DRILL_MARK, notify_type, priority, title_prefix

        people = recipients(targets, self.site, on_call=self.decided(None))
        level = priority(sop_class)
        mark = f"{DRILL_MARK} " if drill_speed is not None else ""
        message = Message(title=f"{mark}{title_prefix(level)} {title}",
                          body=(drill_note(drill_speed) if drill_speed is not None else "") + body,
                          notify_type=notify_type(sop_class, "assigned"), priority=level)
        results = self.dispatcher.submit(message, people).result()
        self.record_deliveries(run_id, step_id, "message", results)
        return lane_outcomes(results)

    def would_reach(self, targets: list[str]) -> list[str]:
        """Whom :meth:`broadcast` would send a message to now (a drill's notify step: nothing is sent)."""
        from notifications import recipients

        return [f"{recipient.kind} {recipient.id}" for recipient in
                recipients(targets, self.site, on_call=self.decided(None))]

    def _recorded(self, run_id: str, step_id: str | None, kind: str, results: list[Any],
                  outbox_id: int | None = None, kept: list[dict[str, Any]] | None = None,
                  facts: dict[str, Any] | None = None) -> None:
        """A page's deliveries are done: record them now, or (background) with others in one transaction."""
        background = self._background
        if background is None:
            self._write([Batched(run_id, step_id, kind, results, outbox_id, kept or [], facts or {})])
            return
        with self._pending_lock:
            self._pending.append(Batched(run_id, step_id, kind, results, outbox_id, kept or [], facts or {}))
            if self._flush_queued:
                return  # the queued flush takes this one too
            self._flush_queued = True
        try:
            background.submit(self._flush)
        except RuntimeError:  # shutting down: write here rather than lose it
            self._flush()

    def _flush(self) -> None:
        with self._pending_lock:
            batch, self._pending, self._flush_queued = self._pending, [], False
        if batch:
            self._write(batch)

    def record_deliveries(self, run_id: str, step_id: str | None, kind: str, results: list[Any],
                          outbox_id: int | None = None) -> None:
        """One ledger record per page, one ``deliveries`` row per destination tried; its outbox row done."""
        self._write([Batched(run_id, step_id, kind, results, outbox_id)])

    def _write(self, batch: list[Batched]) -> None:
        # a storm's pages are recorded a few at a time: the ledger's write lock is shared with
        # every other process's transitions, and a long hold makes their answers wait
        for start in range(0, len(batch), WRITE_CHUNK):
            self._write_chunk(batch[start:start + WRITE_CHUNK])

    def _write_chunk(self, batch: list[Batched]) -> None:
        # everything but the records' seq and hash is made before the transaction: the write lock
        # is then held for four statements (the chain's last record, records, deliveries, outbox)
        try:
            prepared = [prepare_page(b.run_id, b.step_id, b.kind, b.results, kept=b.kept, extra=b.facts)
                        for b in batch]
            done = [b.outbox_id for b in batch if b.outbox_id is not None]
            # per run: it reads no run, inserts records, deliveries and kept items, and closes its own claimed rows
            with self.ledger.transaction(per_run=True, head=True) as tx:
                write_pages(tx, prepared)
                outbox.mark_done_in(tx, done)
        except Exception:
            log.exception("event=delivery_record_failed pages=%d runs=%s", len(batch),
                          ",".join({b.run_id for b in batch}))
        if self.digests is not None and any(b.kept for b in batch):
            self.digests.kept()
        for run_id, step_id, kind, results, *_ in batch:
            failed = [r for r in results if not r.ok]
            log.info("event=notification run=%s step=%s kind=%s destinations=%d failed=%d", run_id, step_id or "-",
                     kind, len(results), len(failed))

    def context(self, view: RunView, page: Any, step: StepBase | None, now: datetime,
                on_call: Callable[[str], OnCall] | None = None) -> Any:
        """The notification context of a page (:func:`flows.engine.page_context.page_context`); ``on_call``: who
        the page's roles meant (default: who is on call now)."""
        return page_context(self.site, view, page, step, now, on_call or self.decided(None),
                            self._step_link(view, step, page.kind))

    @property
    def links(self) -> Any:
        """Makes each reader's personal step link (``flows.engine.links.Links``; None: pages carry none). Got when
        a page first needs one: a command that sends none (``sop status`` in a person's terminal) never reads the
        site's secret."""
        if self._links is None and self.links_from is not None:
            self._links = self.links_from()
        return self._links

    @links.setter
    def links(self, value: Any) -> None:
        self._links = value

    def _step_link(self, view: RunView, step: StepBase | None, kind: str) -> Any:
        """Each reader's personal link to the step's page, for the kinds that ask for work (people only)."""
        from notifications.message import ACTION_KINDS

        if step is None or not isinstance(step, HumanStep) or kind not in ACTION_KINDS:
            return None
        try:
            links = self.links
        except SecretUnsafe as exc:  # the page goes without its link (the command in it still works), not lost
            log.warning("event=page_without_link kind=%s step=%s reason=%r", kind, step.id, str(exc))
            return None
        if links is None:
            return None
        max_age = scaled(links.max_age, view.speed)
        people = self.site.people
        return lambda person: (links.step_link(person, view.id, step.id, max_age=max_age)
                               if person in people else None)
