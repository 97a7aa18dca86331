"""Silenced triggers, from the chain: every signal a silence kept from starting a run, who decided and why.

Read from the records alone (``silence_created``, ``silence_ended``, ``trigger_silenced``),
as every audit figure is. :func:`silence_lines` gives one row per silence (who made it and
how, why, its matchers, until when, who ended it, how many triggers it silenced, per SOP);
:func:`silenced_lines` one row per silenced trigger. A window selects by when the trigger
was silenced (for the silences: those that silenced something in it, or were made in it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from flows.audit.scope import Window
from flows.language.actors import described
from flows.ledger import utc
from flows.ledger.schema import records
from flows.ledger.vocabulary import RecordKind

KINDS = (RecordKind.SILENCE_CREATED, RecordKind.SILENCE_ENDED, RecordKind.TRIGGER_SILENCED)


@dataclass
class SilenceLine:
    """One silence as the audit reads it; ``silenced``: triggers it held (in the window), ``by_sop`` per SOP."""

    silence: str
    created_by: str  # as the audit writes an actor: ``li-wei (cli, os user ops)``
    reason: str
    matchers: str
    created_at: datetime | None
    ends_at: str | None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None
    silenced: int = 0
    by_sop: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SilencedLine:
    """One trigger a silence held: when, which SOP it would have started, the signal, the silence and its maker."""

    at: datetime
    silence: str
    silenced_by: str
    reason: str
    sop: str
    trigger: int | None
    kind: str  # alert | event | metric
    subject: str  # alertname and labels, the event's name, the metric and its labels
    sender: str | None  # who sent the signal (a token's principal)
    copies: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SILENCE_COLUMNS = [f.name for f in fields(SilenceLine)]
SILENCED_COLUMNS = [f.name for f in fields(SilencedLine)]


def _subject(signal: dict[str, Any]) -> str:
    labels = signal.get("labels") or {}
    kind = signal.get("kind")
    if kind == "event":
        name, values = signal.get("event", ""), signal.get("values") or {}
        return f"{name} {json.dumps(values, sort_keys=True, ensure_ascii=False)}" if values else str(name)
    name = signal.get("metric") if kind == "metric" else labels.get("alertname", "")
    rest = {k: v for k, v in labels.items() if k != "alertname"}
    text = f"{name} {json.dumps(rest, sort_keys=True, ensure_ascii=False)}" if rest else str(name)
    return f"{text} = {signal['value']}" if kind == "metric" and "value" in signal else text


def _rows(conn: Connection) -> list[Any]:
    return list(conn.execute(sa.select(records.c.at, records.c.kind, records.c.actor, records.c.data)
                             .where(records.c.kind.in_([str(k) for k in KINDS])).order_by(records.c.seq)))


def silenced_lines(conn: Connection, within: Window | None = None) -> list[SilencedLine]:
    """Every silenced trigger in the window, in the order it came."""
    within = within or Window()
    out = []
    for row in _rows(conn):
        at = utc(row.at)
        if row.kind != RecordKind.TRIGGER_SILENCED or not within.contains(at):  # type: ignore[arg-type]
            continue
        data = json.loads(row.data)
        signal = data.get("signal") or {}
        out.append(SilencedLine(at=at, silence=data.get("silence", ""), silenced_by=data.get("silenced_by", ""),  # type: ignore[arg-type]
                                reason=data.get("reason", ""), sop=data.get("sop", ""), trigger=data.get("trigger"),
                                kind=str(signal.get("kind", "")), subject=_subject(signal), sender=row.actor,
                                copies=int(data.get("copies", 1))))
    return out


def silence_lines(conn: Connection, within: Window | None = None) -> list[SilenceLine]:
    """Each silence made in the window or that silenced a trigger in it, with its count, oldest first."""
    within = within or Window()
    lines: dict[str, SilenceLine] = {}
    for row in _rows(conn):
        at, data = utc(row.at), json.loads(row.data)
        sid = data.get("silence", "")
        if row.kind == RecordKind.SILENCE_CREATED:
            lines[sid] = SilenceLine(silence=sid, created_by=described(row.actor, data), reason=data.get("reason", ""),
                                     matchers=data.get("text", ""), created_at=at, ends_at=data.get("ends_at"))
            continue
        line = lines.setdefault(sid, SilenceLine(silence=sid, created_by=data.get("silenced_by", "-"),
                                                 reason=data.get("reason", ""), matchers="", created_at=None,
                                                 ends_at=None))
        if row.kind == RecordKind.SILENCE_ENDED:
            line.ended_at, line.ended_by, line.end_reason = at, described(row.actor, data), data.get("reason")
        elif within.contains(at):  # type: ignore[arg-type]
            line.silenced += 1
            sop = data.get("sop", "")
            line.by_sop[sop] = line.by_sop.get(sop, 0) + 1
    return [line for line in lines.values()
            if line.silenced or (line.created_at is not None and within.contains(line.created_at))]


__all__ = ["SILENCED_COLUMNS", "SILENCE_COLUMNS", "SilenceLine", "SilencedLine", "silence_lines", "silenced_lines"]
