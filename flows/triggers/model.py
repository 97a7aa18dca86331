"""What the parse stage produces and the later stages consume: alerts, events, samples, dispositions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AlertStatus = Literal["firing", "resolved"]


def labels_fingerprint(labels: dict[str, str]) -> str:
    """A stable id of a label set (for alerts that come without a fingerprint, and metric series)."""
    text = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SignalRefused(ValueError):
    """Parsed signals that the intake refuses as a whole, before anything is stored; ``field`` locates the
    first bad one in the payload (``samples.3.at``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Alert:
    """One alert, whatever sent it (Alertmanager or Grafana), in one shape."""

    source: Literal["alertmanager", "grafana"]
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    starts_at: str | None = None
    ends_at: str | None = None
    generator_url: str | None = None
    values: dict[str, Any] | None = None
    receiver: str | None = None

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", labels_fingerprint(self.labels))

    def payload(self) -> dict[str, Any]:
        """The ``trigger`` a run pins in the ledger and templates read (``trigger.labels.x``)."""
        out: dict[str, Any] = {
            "kind": "alert",
            "source": self.source,
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at,
        }
        if self.ends_at:
            out["ends_at"] = self.ends_at
        if self.generator_url:
            out["generator_url"] = self.generator_url
        if self.values is not None:
            out["values"] = self.values
        if self.receiver:
            out["receiver"] = self.receiver
        return out


@dataclass(frozen=True)
class Event:
    """A generic event (``POST /v1/events``): a name, an optional key, and values."""

    name: str
    key: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The ``trigger`` of a run started by this event: its values at top level (``trigger.platform``)."""
        return {**self.values, "kind": "event", "event": self.name, "key": self.key, "values": dict(self.values)}


@dataclass(frozen=True)
class Sample:
    """One metric sample: a value of a series (metric + labels) at an instant."""

    metric: str
    value: float
    at: datetime
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def series(self) -> str:
        return labels_fingerprint(self.labels)


@dataclass
class Disposition:
    """What the intake did with one signal for one SOP (or that no SOP wanted it).

    Not a run's outcome (done / failed / rejected): a disposition says whether the signal
    started a run, attached to an open one, was recorded as resolved, refused, silenced (a
    person's silence held it: recorded, no run), or matched nothing. On the wire it keeps
    its first name: the answer lists ``outcomes`` and the log
    line says ``outcome=``.
    """

    status: Literal["started", "attached", "resolved", "unrouted", "refused", "no_open_run", "silenced"]
    sop: str | None = None
    run: str | None = None
    repeats: int = 0
    trigger: int | None = None
    subject: str | None = None
    problems: list[str] = field(default_factory=list)
    #: how many times the payload held this signal (copies are taken once)
    copies: int = 1
    #: the silence that held it (``silenced``: no run started, a ``trigger_silenced`` record written)
    silence: str | None = None
    #: a refusal's: whether its SOP's owner was paged now (False: the same refusal paged them within the hour)
    paged: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "sop": self.sop, "run": self.run}
        if self.status == "attached" or self.repeats:
            out["repeats"] = self.repeats
        if self.copies > 1:
            out["copies"] = self.copies
        if self.trigger is not None:
            out["trigger"] = self.trigger
        if self.subject:
            out["subject"] = self.subject
        if self.problems:
            out["problems"] = self.problems
        if self.silence:
            out["silence"] = self.silence
        if self.paged is not None:
            out["owner_paged"] = self.paged
        return out


def summary(dispositions: list[Disposition]) -> dict[str, Any]:
    """Counts by status plus every disposition (as ``outcomes``): the body of an intake endpoint's answer."""
    counts: dict[str, int] = {}
    for disposition in dispositions:
        counts[disposition.status] = counts.get(disposition.status, 0) + 1
    return {"counts": counts, "outcomes": [d.to_dict() for d in dispositions]}
