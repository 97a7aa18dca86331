"""What every view of ``sop status`` (and a drill's end) says above its runs: pages waiting in the outbox, alerts
refused in the last 24 hours, and pages kept for people's digests. A module of its own: ``status`` and ``load``
(``--for``, ``--people``) both print it, and ``status`` calls ``load``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.markup import escape

from flows.cli.common import console
from flows.language.durations import format_duration


def page_notes(engine: Any, person: str | None = None) -> None:
    """Above the runs: pages that wait to be sent, alerts refused in the last 24 hours, and pages kept for people's
    digests (``person``'s only, for a view of what waits on them)."""
    outbox_warning(engine)
    say_refused(engine)
    say_digests_waiting(engine, person=person)


def say_refused(engine: Any) -> None:
    """``1 alert refused in the last 24 h: refund-rate — the alert has no label `brand```: signals an SOP's trigger
    matched but could not start (``flows.triggers.refusal``), whose incidents nobody handles until started by hand."""
    from flows.triggers.refusal import recent, said

    text = said(recent(engine.ledger, engine.clock.now()))
    if text:
        console.print(f"[red]{escape(text)}[/] (its owner was paged; `sop audit refused` lists each)", soft_wrap=True)


def say_digests_waiting(engine: Any, then: str = "", person: str | None = None) -> None:
    """``3 page(s) kept for digests: tom-becker 2 (due in 40s), li-wei 1 (due now)``: informational pages a
    pager process keeps for people with ``digest`` (docs/notifications.md "Digest"), each person's due (``person``:
    theirs only); ``then``: words after it (what happens to them)."""
    from flows.engine.digest import waiting, window

    kept = {who: seen for who, seen in waiting(engine.ledger).items() if person is None or who == person}
    if not kept:
        return
    now = datetime.now(UTC)
    said = []
    for who, (count, oldest) in sorted(kept.items(), key=lambda item: item[1][1]):
        left = (oldest + window(engine.site, who) - now).total_seconds()
        due = "now" if left < 1 else f"in {format_duration(timedelta(seconds=round(left)))}"
        said.append(f"{escape(who)} {count} (due {due})")
    total = sum(count for count, _ in kept.values())
    console.print(f"{total} page(s) kept for digests: {', '.join(said)}{then}", soft_wrap=True)


#: pages queued longer than this are worth a line in `sop status`
OUTBOX_STALE_S = 30.0


def outbox_warning(engine: Any) -> None:
    """Say so when pages have waited in the outbox (no pager process, or one that is stuck): every view of
    ``sop status`` but ``--json`` starts with it."""
    from flows.engine.outbox import backlog
    from flows.ledger import utc

    waiting = backlog(engine.ledger)
    oldest = utc(waiting["oldest"])
    if not waiting["pending"] or oldest is None:
        return
    age = (datetime.now(UTC) - oldest).total_seconds()
    if age < OUTBOX_STALE_S:
        return
    who = ("a pager process is alive: see var/log/pager.log" if waiting["pager_alive"]
           else "no pager process is alive: start `sop serve` or `sop pager`")
    console.print(f"[red]{waiting['pending']} page(s) waiting to be sent, the oldest for {age:.0f}s[/] ({who})")
