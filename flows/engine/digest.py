"""Digests: a person's informational pages kept in the ledger, then sent to them as one message.

A person with ``digest: 15m`` (config/people.yaml) is not sent, one by one, the pages that ask nothing of them
(``flows.language.urgency.informational``: never the end of a failed run, never a page that stops their work). Only a pager process keeps them
(``Pager.drains``): it is the process that will send the digest. Anywhere else (a CLI command with no pager
alive) every page goes at once, as before, rather than be kept with nobody to send it.

- :func:`keep` splits a page's recipients: the items it keeps are written in the transaction that records the
  page's deliveries (``flows.engine.page_records``), its ``notification`` record saying ``kept`` for whom.
- :class:`Digests` (the pager process's loop calls :meth:`Digests.send_due`) claims a person's items for a lease
  once the oldest is ``digest`` old (wall time), sends them as one message (``notifications.digest``) with the
  delivery's retries and fallback, and records it on every run it covers: a ``notification`` record ``digest``
  (with the seqs of the records that kept its items) and its ``deliveries`` rows, the items marked sent in the
  same transaction. Killed before that, its claim runs out and the next pager process sends them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.engine import outbox
from flows.engine.page_records import prepare_page, write_pages
from flows.language.urgency import informational
from flows.ledger import utc
from flows.ledger.schema import digest_items

log = logging.getLogger("sop.digest")

#: the most items one digest message lists (more wait for the next one, due at once)
MOST_ITEMS = 100
_OPEN = digest_items.c.sent_at.is_(None)
_WAITING = (sa.select(digest_items.c.person, sa.func.count(), sa.func.min(digest_items.c.kept_at))
            .where(_OPEN).group_by(digest_items.c.person))


def _claimable(now: datetime) -> Any:
    return _OPEN & (digest_items.c.claimed_until.is_(None) | (digest_items.c.claimed_until < now))


def keep(site: Any, page: Any, ctx: Any, people: list[Any], render: Callable[[Any], Any],
         now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    """``people`` less those whose digest keeps this page, and the items kept for them (rows of
    ``digest_items`` without their record). A page that asks for something, or a reader it cannot be rendered
    for, is not kept: it goes at once."""
    if not informational(page.kind, ctx.run.status):
        return people, []
    sent, kept = [], []
    for recipient in people:
        person = site.people.get(recipient.id) if recipient.kind == "person" else None
        if person is None or person.digest is None:
            sent.append(recipient)
            continue
        try:
            title = render(recipient).title
        except Exception:  # noqa: BLE001 - rendered as it is sent, its failure recorded as any page's is
            sent.append(recipient)
            continue
        kept.append({"person": recipient.id, "run_id": page.run_id, "step_id": page.step_id, "kind": page.kind,
                     "priority": ctx.sop.priority, "title": title, "about": ctx.about, "url": ctx.run.url,
                     "at": now, "kept_at": outbox.wall(), "record": None})
    return sent, kept


def _due_from(ledger: Any, now: datetime) -> dict[str, datetime]:
    """When each person's oldest item that no pager holds was kept: what :meth:`Digests.send_due` waits on (items a
    digest in flight holds are not: a page kept meanwhile waits for its own window, not for theirs)."""
    query = (sa.select(digest_items.c.person, sa.func.min(digest_items.c.kept_at)).where(_claimable(now))
             .group_by(digest_items.c.person))
    with ledger.read() as conn:
        return {person: utc(oldest) for person, oldest in conn.execute(query)}


def window(site: Any, person: str) -> timedelta:
    """How long ``person``'s kept items wait: their ``digest`` (none: a person whose ``digest`` was removed, or who
    left config/, is sent what waits at once)."""
    found = site.people.get(person)
    return found.digest if found is not None and found.digest is not None else timedelta(0)


def waiting(ledger: Any) -> dict[str, tuple[int, datetime]]:
    """Items waiting for each person's digest: how many, and when the oldest was kept (``sop status``)."""
    with ledger.read() as conn:
        return {r[0]: (r[1], utc(r[2])) for r in conn.execute(_WAITING)}


class Digests:
    """A pager process's digests: which are due, and sending them (see the module docstring)."""

    def __init__(self, pager: Any, look_every: float = outbox.BEAT_EVERY):
        #: the pager process's ``flows.engine.paging.Pager`` (its ledger, site, dispatcher and record writing)
        self.pager = pager
        #: items kept by another pager process (or a dead one) are seen within this many seconds
        self.look_every = look_every
        self._next_look = 0.0

    def kept(self) -> None:
        """Items were kept: look again now (a shorter digest than the one waiting may be due first)."""
        self._next_look = 0.0

    def send_due(self) -> int:
        """Send every digest whose oldest item is its person's ``digest`` old; how many were sent. Between two
        looks at the ledger it costs a clock read."""
        if time.monotonic() < self._next_look:
            return 0
        now = outbox.wall()
        due, soonest = [], self.look_every
        for person, oldest in _due_from(self.pager.ledger, now).items():
            left = (oldest + self.window(person) - now).total_seconds()
            if left <= 0:
                due.append(person)
            else:
                soonest = min(soonest, left)
        self._next_look = time.monotonic() + soonest
        return sum(self.send(person) for person in due)

    def window(self, person: str) -> Any:
        """How long ``person``'s items wait (:func:`window`)."""
        return window(self.pager.site, person)

    def claim(self, person: str) -> list[Any]:
        """Take ``person``'s waiting items (oldest first, up to :data:`MOST_ITEMS`) for :data:`outbox.LEASE`."""
        now = outbox.wall()
        with self.pager.ledger.transaction() as tx:
            rows = tx.conn.execute(sa.select(digest_items).where((digest_items.c.person == person) & _claimable(now))
                                   .order_by(digest_items.c.id).limit(MOST_ITEMS)).all()
            if rows:
                tx.conn.execute(digest_items.update().where(digest_items.c.id.in_([r.id for r in rows]))
                                .values(claimed_by=self.pager.name, claimed_until=now + outbox.LEASE))
        return rows

    def send(self, person: str) -> int:
        """Send ``person`` their digest (1), or nothing when another pager process holds their items (0)."""
        from notifications import DeliveryResult, recipients, redact
        from notifications.digest import DigestItem, digest_message

        rows = self.claim(person)
        if not rows:
            return 0
        items = [DigestItem(kind=r.kind, priority=r.priority, title=r.title, about=r.about, url=r.url,
                            at=utc(r.at)) for r in rows]
        try:
            [reader] = recipients([person], self.pager.site)
            message = digest_message(items, reader)
        except Exception as exc:  # noqa: BLE001 - recorded as a failed delivery, as a page that cannot be sent is
            error = redact(f"{type(exc).__name__}: {exc}")[:2000]
            log.error("event=digest_failed person=%s items=%d error=%r", person, len(rows), error)
            self.record(person, rows, [DeliveryResult(
                recipient=person, recipient_kind="person", destination="—", ok=False,
                error=f"not sent, the digest failed before delivery: {error}", attempts=0, latency=0.0,
                at=self.pager.ledger.clock.now(), kind="digest")])
            return 1
        self.pager.dispatcher.submit(message, [reader], on_done=lambda results: self.record(person, rows, results))
        return 1

    def record(self, person: str, rows: list[Any], results: list[Any]) -> None:
        """The digest's delivery on every run it covers (a ``notification`` record and its ``deliveries``), its
        items sent, in one transaction. Its items stay claimed when this fails: sent again after the lease."""
        try:
            with self.pager.ledger.transaction(per_run=True) as tx:
                # only the items this process still holds: a lease that ran out mid-delivery let another pager send
                # them too, and the first to record is the one the runs' stories tell (RETURNING: no rowcount)
                mine = set(tx.conn.execute(
                    digest_items.update().where(digest_items.c.id.in_([r.id for r in rows])
                                                & (digest_items.c.claimed_by == self.pager.name) & _OPEN)
                    .values(sent_at=outbox.wall()).returning(digest_items.c.id)).scalars())
                runs: dict[str, list[Any]] = {}
                for row in rows:
                    if row.id in mine:
                        runs.setdefault(row.run_id, []).append(row)
                if runs:
                    write_pages(tx, [prepare_page(run_id, None, "digest", results, extra={
                        "person": person, "covers": [r.record for r in covered], "kinds": [r.kind for r in covered]})
                        for run_id, covered in runs.items()])
        except Exception:
            log.exception("event=digest_record_failed person=%s items=%d", person, len(rows))
            return
        if len(mine) < len(rows):
            log.warning("event=digest_claim_lost person=%s items=%d recorded=%d (another pager took them after the "
                        "lease)", person, len(rows), len(mine))
        log.info("event=digest person=%s items=%d runs=%d delivered=%s", person, len(mine), len(runs),
                 any(r.ok for r in results))
