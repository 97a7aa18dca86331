"""Refused triggers, from the chain: every signal an SOP's trigger matched but could not start, and why.

Read from the ``trigger_refused`` records alone, as every audit figure is (``flows.triggers.refusal`` writes them):
one row per refusal, with whether its SOP's owner was paged for it (the first of an hour) or it was a repeat
(``count``: the refusals of that hour so far). A window selects by when the signal was refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from flows.audit.scope import Window, recorded
from flows.ledger.vocabulary import RecordKind


@dataclass
class RefusedLine:
    """One refused signal: when, the SOP and trigger it matched, where it came from, why it could not start."""

    at: datetime
    sop: str
    trigger: int | None
    source: str  # alertmanager, grafana, event, metric
    subject: str  # the alert's fingerprint, the event's key, the metric series
    problems: str  # as the sender was answered, joined by "; "
    labels: str  # the signal's labels, name=value, comma-separated
    paged: bool  # its SOP's owner was paged for it (else a repeat within the hour)
    count: int  # the refusals of the same SOP, trigger and problem in that hour so far
    sender: str | None  # who sent the signal (a token's principal)
    copies: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


REFUSED_COLUMNS = [f.name for f in fields(RefusedLine)]


def refused_lines(conn: Connection, within: Window | None = None) -> list[RefusedLine]:
    """Every refused signal in the window, in the order it came."""
    out = []
    for row, at, data in recorded(conn, [str(RecordKind.TRIGGER_REFUSED)], within):
        labels = data.get("labels") or {}
        out.append(RefusedLine(at=at, sop=data.get("sop", ""), trigger=data.get("trigger"),  # type: ignore[arg-type]
                               source=data.get("source", ""), subject=data.get("subject") or "",
                               problems="; ".join(data.get("problems") or []),
                               labels=", ".join(f"{k}={v}" for k, v in labels.items()), paged=bool(data.get("paged")),
                               count=int(data.get("count", 1)), sender=row.actor, copies=int(data.get("copies", 1))))
    return out


__all__ = ["REFUSED_COLUMNS", "RefusedLine", "refused_lines"]
