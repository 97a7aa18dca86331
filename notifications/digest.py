"""A person's digest: the informational pages kept for them, as one message.

Someone with ``digest: 15m`` in config/people.yaml gets the pages that ask nothing of them (a step done, a run
finished, a status update…: :func:`flows.language.urgency.informational`) bundled: the engine keeps each as a
:class:`DigestItem` (its title as they would have read it) and, once the oldest is ``digest`` old, sends them
this one message (``flows.engine.digest``). It is markdown like every template's body, so every channel gets it
as ``notifications.markup`` makes it (HTML, Telegram, markdown, plain): no table, no link that hides its address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flows.language.spec import SOP_CLASSES
from notifications.addressing import Recipient
from notifications.message import Message
from notifications.urgency import DRILL_MARK, title_prefix

#: a digest's kind, in the ledger's ``notification`` records and ``deliveries`` rows
DIGEST = "digest"


@dataclass(frozen=True)
class DigestItem:
    """One kept page: what its reader would have read as its title (``[P2] Done: Assess (Crisis PR · lumi)``),
    which run (``about``: SOP and subject; ``url``: its page) and when it happened."""

    kind: str
    priority: int
    title: str
    about: str
    url: str
    at: datetime


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _drill(item: DigestItem) -> bool:
    """A drill's page: its title, as its reader would have read it, starts with the drill's mark."""
    return item.title.startswith(DRILL_MARK)


def _what(item: DigestItem) -> str:
    """The item's title without its ``[DRILL] [Pn]`` (its group says them) and its run (the group's line says it)."""
    title = item.title.removeprefix(DRILL_MARK).strip().removeprefix(title_prefix(item.priority)).strip()
    return title.replace(f" ({item.about})", "")


def _run_line(item: DigestItem) -> str:
    cls = SOP_CLASSES[item.priority - 1] if 1 <= item.priority <= len(SOP_CLASSES) else "?"
    if _drill(item):
        return f"**{DRILL_MARK} {title_prefix(item.priority)} {item.about}** ({cls}, a drill): {item.url}"
    return f"**{title_prefix(item.priority)} {item.about}** ({cls}): {item.url}"


def digest_message(items: Iterable[DigestItem], recipient: Recipient) -> Message:
    """The digest of ``items`` for ``recipient``: most urgent class first, each run's items together (its
    SOP, subject and link once), each item with its time in the reader's zone, oldest first."""
    kept = sorted(items, key=lambda i: (i.priority, i.url, i.at))
    if not kept:
        raise ValueError("a digest of nothing")
    zone = _zone(recipient.timezone)
    runs: dict[str, list[DigestItem]] = {}
    for item in kept:
        runs.setdefault(item.url, []).append(item)
    first = min(i.at for i in kept).astimezone(zone)
    lines = [f"{recipient.name}, {len(kept)} update(s) since {first:%H:%M} ({recipient.timezone}) that ask "
             "nothing of you, kept for your digest. Pages that ask for work or say something is late "
             "still reach you at once.", ""]
    for group in runs.values():
        lines += [_run_line(group[0]), ""]
        lines += [f"- {item.at.astimezone(zone):%H:%M} {_what(item)}" for item in group]
        lines.append("")
    real = [i for i in kept if not _drill(i)]
    # its title is as urgent as its real runs: a drill's P1 makes no P1 of a digest of a P4 incident
    top = (real or kept)[0].priority
    noun = "update" if len(kept) == 1 else "updates"
    mark = f"{DRILL_MARK} " if not real else ""
    drills = f" ({len(runs) - len({i.url for i in real})} of them a drill)" if real and len(real) < len(kept) else ""
    title = f"{mark}{title_prefix(top)} Digest: {len(kept)} {noun} in {len(runs)} run(s){drills}, nothing asked of you"
    return Message(title=title, body="\n".join(lines).strip(), notify_type="info", priority=top, kind=DIGEST)

