"""Metric samples: parsing ``POST /v1/metrics`` and the sample store in the ledger database.

Samples live next to the runs (same database, ``metric_samples``), so a metric rule and
the run it starts are judged by the same database. Firings are fenced there too
(``metric_firings``: one per SOP, trigger, series and period), so two API processes that
judge the same samples start one run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError

from flows.ledger import Ledger, utc
from flows.ledger.schema import metric_firings, metric_samples
from flows.triggers.events import NAME
from flows.triggers.model import Sample, SignalRefused

#: how far ahead of this service's clock a sample may be dated: senders' clocks drift a little, but a
#: sample dated in 2099 would be its series' newest for ever, and the series' rules would judge that
#: period and never the present again
MAX_CLOCK_SKEW = timedelta(minutes=5)


#: the earliest instant a sample may be dated: the Unix epoch (periods are aligned to it; a sample of the
#: year 1 left a rule's calendar no period before it to look at)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def check_dates(samples: list[Sample], now: datetime) -> None:
    """Refuse the batch (:class:`SignalRefused`, naming the first bad sample) when a sample is dated before
    :data:`EARLIEST` or later than ``now`` plus :data:`MAX_CLOCK_SKEW`."""
    latest = now + MAX_CLOCK_SKEW
    for i, sample in enumerate(samples):
        if sample.at < EARLIEST:
            raise SignalRefused(f"samples.{i}.at", f"{sample.at.isoformat()} is before 1970-01-01T00:00:00+00:00 "
                                                   "(Unix time 0); nothing was stored")
        if sample.at > latest:
            raise SignalRefused(
                f"samples.{i}.at",
                f"{sample.at.isoformat()} is later than now ({now.isoformat(timespec='seconds')}) by more than "
                f"{MAX_CLOCK_SKEW.total_seconds() / 60:g} minutes: check the sender's clock; nothing was stored",
            )


class SamplePayload(BaseModel):
    """One sample: ``{"metric": "daily_uv", "value": 51234, "at": "2026-11-20T00:00:00+08:00", "labels": {…}}``."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(pattern=NAME, max_length=120)
    value: float = Field(allow_inf_nan=False)
    at: datetime = Field(
        validation_alias=AliasChoices("at", "timestamp"),
        description="ISO 8601 (naive means UTC) or Unix seconds; `timestamp` is accepted too",
    )
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MetricsPayload(BaseModel):
    """A batch of samples: all are stored, or none."""

    model_config = ConfigDict(extra="forbid")

    samples: list[SamplePayload] = Field(min_length=1, max_length=10_000)


def samples(payload: MetricsPayload) -> list[Sample]:
    """The batch's samples in the common shape."""
    return [Sample(metric=s.metric, value=s.value, at=s.at, labels=dict(s.labels)) for s in payload.samples]


def parse(body: Any) -> list[Sample]:
    """Validate a decoded body as a batch of samples (ValidationError names the field)."""
    return samples(MetricsPayload.model_validate(body))


class SampleStore:
    """Samples and firings in the ledger database (never chained: data, not audit)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def add(self, samples: list[Sample]) -> None:
        """Store a batch in one transaction."""
        now = self.ledger.clock.now()
        rows = [
            {
                "metric": s.metric,
                "series": s.series,
                "at": s.at,
                "value": s.value,
                "received_at": now,
                "labels": json.dumps(s.labels, sort_keys=True, ensure_ascii=False),
            }
            for s in samples
        ]
        with self.ledger.transaction() as tx:
            tx.conn.execute(metric_samples.insert(), rows)

    def newest(self, metric: str, series: str) -> datetime | None:
        """The instant of the series' newest sample."""
        with self.ledger.read() as conn:
            return utc(
                conn.execute(
                    sa.select(sa.func.max(metric_samples.c.at)).where(
                        (metric_samples.c.metric == metric) & (metric_samples.c.series == series)
                    )
                ).scalar()
            )

    def between(self, metric: str, series: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """Samples of a series in [start, end), in time order."""
        c = metric_samples.c
        with self.ledger.read() as conn:
            rows = conn.execute(
                sa.select(c.at, c.value)
                .where((c.metric == metric) & (c.series == series) & (c.at >= start) & (c.at < end))
                .order_by(c.at, c.id)
            )
            return [(utc(r.at), r.value) for r in rows]  # type: ignore[misc]

    def last(self, metric: str, series: str, count: int) -> list[tuple[datetime, float]]:
        """The series' last ``count`` samples, in time order."""
        c = metric_samples.c
        with self.ledger.read() as conn:
            rows = conn.execute(
                sa.select(c.at, c.value)
                .where((c.metric == metric) & (c.series == series))
                .order_by(c.at.desc(), c.id.desc())
                .limit(count)
            ).all()
        return [(utc(r.at), r.value) for r in reversed(rows)]  # type: ignore[misc]

    def claim(self, sop_id: str, trigger: int, series: str, period_start: datetime, value: float) -> int | None:
        """Record a firing; its id, or None when this SOP trigger already fired for that series and period."""
        try:
            with self.ledger.transaction() as tx:
                result = tx.conn.execute(
                    metric_firings.insert().values(
                        sop_id=sop_id,
                        trigger=trigger,
                        series=series,
                        period_start=period_start,
                        value=value,
                        fired_at=self.ledger.clock.now(),
                    )
                )
                return int(result.inserted_primary_key[0])
        except IntegrityError:
            return None

    def settle(self, firing_id: int, status: str, run_id: str | None) -> None:
        """Note what a firing became (its disposition's status: started / attached / refused) and its run."""
        with self.ledger.transaction() as tx:
            tx.conn.execute(
                metric_firings.update().where(metric_firings.c.id == firing_id).values(outcome=status, run_id=run_id)
            )
