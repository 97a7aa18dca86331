"""The page a refused signal sends its SOP's owner (``flows.triggers.refusal`` decides that it goes).

The owner role is resolved through on-call as every page's is (an override, a rotation); the message is
``notifications/templates/trigger_refused.md.j2`` (:mod:`notifications.refusal`), sent at once: it asks for work
(start the run by hand, mend the rule), so a digest never keeps it. Its deliveries are recorded as every page's
(a ``notification`` record of kind ``trigger_refused`` and ``deliveries`` rows), with no run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flows.engine.oncall import resolve_targets
from flows.logfmt import kv
from flows.triggers.model import Disposition

log = logging.getLogger("sop.intake")


def page_owner(engine: Any, refused: Disposition, why: str, source: str, labels: dict[str, str], at: datetime) -> None:
    """Send the refusal's page to its SOP's owner (``why``: its first problem in a few words), on the delivery
    threads; never raises (its record is written)."""
    from notifications import RecipientInfo, recipients
    from notifications.message import SopInfo
    from notifications.refusal import REFUSED, Refusal, refusal_message

    pager = engine.pager
    if pager is None:  # an engine built without one (a test's, a one-off command's): the record says it all
        log.warning(kv("event=refusal_not_paged", sop=refused.sop, reason="no pager"))
        return
    try:
        site, sop = engine.site, engine.library.get(refused.sop).sop
        on_call = pager.decided(None)
        people = recipients(resolve_targets(["owner"], sop, None, site, on_call=on_call), site, on_call=on_call)
        info = SopInfo(id=sop.id, title=sop.title, class_=sop.class_)
        refusal = Refusal(trigger=refused.trigger or 0, source=source, subject=refused.subject or "-",
                          problems=tuple(refused.problems), why=why, at=at, labels=labels,
                          copies=refused.copies, command=start_command(sop, refused.trigger or 0),
                          url=f"{site.settings.base_url.rstrip('/')}/board/start/{sop.id}")
        pager.dispatcher.submit(
            lambda r: refusal_message(info, refusal, RecipientInfo(id=r.id, name=r.name, timezone=r.timezone),
                                      site=site),
            people, on_done=lambda results: pager.record_deliveries(None, None, REFUSED, results))
        log.info(kv("event=refusal_paged", sop=sop.id, trigger=refused.trigger, to=",".join(p.id for p in people)))
    except Exception:  # after the commit: a page that cannot go must not fail the intake that recorded it
        log.exception(kv("event=refusal_page_failed", sop=refused.sop))


def start_command(sop: Any, trigger: int) -> str:
    """``sop run refund-rate -p brand=…``: the inputs the trigger would have given, to fill in by hand."""
    given = list(sop.triggers[trigger].inputs) if 0 <= trigger < len(sop.triggers) else []
    return " ".join([f"sop run {sop.id}", *(f"-p {name}=…" for name in given)])
