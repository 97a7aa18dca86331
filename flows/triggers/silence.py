"""The silence stage: after route, before dedup and start — does a person's silence hold this signal?

A signal that an SOP's trigger matched, and that matches a silence holding now
(:class:`flows.engine.silences.SilenceBook`), starts no run and attaches to none: it is
recorded as ``trigger_silenced`` with the silence, who made it and why, the signal and the
SOP (and trigger) it would have started, so the audit shows every alert not acted on.

What a silence's matchers read (:func:`labels_of`), with the SOP triggers' matchers
(:mod:`flows.triggers.match`):

- an alert (Alertmanager, Grafana): its labels;
- an event: its values, ``key``, and ``alertname`` = the event's name;
- a metric rule's firing: the sample's labels, and ``alertname`` = the metric's name.

``alertname`` is always the signal's name, whatever a sample or event carries under that
key, so ``alertname=daily_mentions`` silences a metric as ``alertname=HighErrorRate`` does
an alert. Only firing signals are silenced: a resolved alert is still noted on the run it
belongs to (it starts nothing either way).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flows.engine import silences as book_module
from flows.engine.silences import Silence, SilenceBook
from flows.ledger import Ledger
from flows.ledger.vocabulary import RecordKind
from flows.triggers.match import matches, value_text
from flows.triggers.model import Alert, Disposition, Event
from flows.triggers.route import Match


def labels_of(signal: Alert | Event | tuple[str, Mapping[str, str]]) -> dict[str, str]:
    """The labels a silence matches for an alert, an event, or a metric series ``(metric, labels)``."""
    if isinstance(signal, Alert):
        return dict(signal.labels)
    if isinstance(signal, Event):
        return {**{k: value_text(v) for k, v in signal.values.items()}, "key": signal.key or "",
                "alertname": signal.name}
    metric, labels = signal
    return {**labels, "alertname": metric}


#: how long the stage keeps the silences it read before reading them again (wall seconds): a silence made
#: or ended in another process (``sop silence`` beside a running API) holds within this; one made or
#: ended in this process, at once. Reading them for every webhook call cost as much as a repeat alert.
REFRESH_S = 1.0


class SilenceStage:
    """Finds the silence holding a signal, and records the signal it held."""

    def __init__(self, ledger: Ledger, book: SilenceBook | None = None, refresh_s: float = REFRESH_S):
        self.ledger = ledger
        self.book = book or SilenceBook(ledger)
        self.refresh_s = refresh_s
        self._kept: tuple[list[Silence], float, int] | None = None  # (unexpired silences, read at, written[0] then)

    def holding(self) -> list[Silence]:
        """The silences holding now on the engine's clock (so expiry and a window's start are exact),
        from the unexpired ones read at most :data:`REFRESH_S` ago."""
        now = self.book.clock.now()
        kept = self._kept
        if kept is None or time.monotonic() - kept[1] >= self.refresh_s or kept[2] != book_module.written[0]:
            generation, read_at = book_module.written[0], time.monotonic()  # before reading: a write during it reads again
            kept = self._kept = (self.book.unexpired(now), read_at, generation)
        return [s for s in kept[0] if s.state(now) == "active"]

    @staticmethod
    def find(silences: list[Silence], labels: Mapping[str, Any]) -> Silence | None:
        """The oldest of ``silences`` whose matchers all hold for ``labels``."""
        return next((s for s in silences if matches(s.rule, labels)), None)

    def record(self, silence: Silence, match: Match, payload: dict[str, Any], actor: str, *, subject: str | None,
               copies: int = 1) -> Disposition:
        """Write ``trigger_silenced`` (no run): the silence, its maker and reason, the signal, the SOP it would start."""
        with self.ledger.transaction() as tx:
            tx.append(RecordKind.TRIGGER_SILENCED, actor=actor, silence=silence.id, silenced_by=silence.created_by,
                      reason=silence.reason, sop=match.sop_id, trigger=match.index, subject=subject, signal=payload,
                      **({"copies": copies} if copies > 1 else {}))
        return Disposition("silenced", sop=match.sop_id, trigger=match.index, subject=subject, copies=copies,
                           silence=silence.id)
