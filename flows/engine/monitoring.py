"""What monitoring said about a run since it started: the latest repeat of its signal (when, and what it said) and
whether its alert has resolved since — read from the run's ``trigger_repeated`` and ``alert_resolved`` records.

The board, the run's page and ``sop status`` show it: a run whose alert resolved at 14:05 is not the same emergency
as one whose alert repeats "420/day" at 14:05.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from flows.language.presentation import shown
from flows.ledger import utc
from flows.ledger.schema import records
from flows.ledger.vocabulary import RecordKind

#: the longest line a signal's words keep (an alert's summary can be a paragraph)
SAID_CHARS = 200
#: an alert's annotations that say what it is about, the first present wins
_SAYING = ("summary", "description", "message")
_KINDS = (RecordKind.TRIGGER_REPEATED, RecordKind.ALERT_RESOLVED)


@dataclass(frozen=True)
class Monitoring:
    """The latest repeat of a run's signal and, when its alert resolved after it, when and which alert."""

    repeated_at: datetime | None = None
    repeat_said: str | None = None  # what the latest repeat said (its summary, its figures), one line
    resolved_at: datetime | None = None  # the alert resolved, and did not fire again since
    resolved_alert: str | None = None  # its alertname

    def __bool__(self) -> bool:
        return self.repeated_at is not None or self.resolved_at is not None


def signal_said(trigger: Mapping[str, Any] | None) -> str | None:
    """What a signal says, in one line: an alert's summary (else description) and its figures (Grafana's values),
    a metric rule's metric and value, an event's values. None when it says nothing."""
    if not isinstance(trigger, Mapping):
        return None
    kind = trigger.get("kind")
    parts: list[str] = []
    if kind == "alert":
        notes = trigger.get("annotations") or {}
        text = next((str(notes[k]) for k in _SAYING if isinstance(notes, Mapping) and notes.get(k)), None)
        parts += [text] if text else []
        values = trigger.get("values")
        if isinstance(values, Mapping) and values:
            parts.append(", ".join(f"{k}={shown(v)}" for k, v in values.items()))
    elif kind == "metric":
        parts.append(f"{trigger.get('metric')} {shown(trigger.get('value'))}"
                     + (f" ({trigger['condition']})" if trigger.get("condition") else ""))
    elif kind == "event":
        values = trigger.get("values")
        if isinstance(values, Mapping) and values:
            parts.append(", ".join(f"{k}={shown(v)}" for k, v in values.items()))
    text = " ".join(" · ".join(parts).split())
    if not text:
        return None
    return text if len(text) <= SAID_CHARS else text[:SAID_CHARS - 1].rstrip() + "…"


def _latest(ids: list[str]) -> sa.Select:
    """Each run's newest record of each kind monitoring writes (one row per run and kind)."""
    newest = (sa.select(sa.func.max(records.c.seq).label("seq"))
              .where(records.c.run_id.in_(ids) & records.c.kind.in_([str(k) for k in _KINDS]))
              .group_by(records.c.run_id, records.c.kind).subquery())
    return sa.select(records.c.run_id, records.c.kind, records.c.seq, records.c.at, records.c.data).join(
        newest, records.c.seq == newest.c.seq)


def monitoring_of(conn: Any, run_ids: Iterable[str]) -> dict[str, Monitoring]:
    """What monitoring said about each of ``run_ids`` (on a read connection): runs it said nothing about are left out."""
    ids = list(run_ids)
    if not ids:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for row in conn.execute(_latest(ids)):
        found.setdefault(row.run_id, {})[row.kind] = row
    out: dict[str, Monitoring] = {}
    for run_id, kinds in found.items():
        repeat, resolved = kinds.get(RecordKind.TRIGGER_REPEATED), kinds.get(RecordKind.ALERT_RESOLVED)
        said = json.loads(repeat.data).get("trigger") if repeat is not None else None
        # a repeat after the resolution is the alert firing again: it is not resolved any more
        if resolved is not None and (repeat is None or resolved.seq > repeat.seq):
            labels = json.loads(resolved.data).get("labels") or {}
            alert = labels.get("alertname") if isinstance(labels, Mapping) else None
            resolved_at, resolved_alert = utc(resolved.at), alert
        else:
            resolved_at, resolved_alert = None, None
        out[run_id] = Monitoring(utc(repeat.at) if repeat is not None else None, signal_said(said),
                                 resolved_at, resolved_alert)
    return out
