"""Tables of the run ledger.

``records`` is the audit trail: append-only, each row chained by a hash to the previous row of its
chain (``chain``, ``pos``: a lane of the ledger; NULL for the records written before lanes, which
form one chain in ``seq`` order). See docs/audit.md, "How the chain is kept".
``runs``, ``steps``, ``timers``, ``deliveries`` are projections of it kept in the same
transaction, so questions like "which runs are open" need no replay. ``sop_versions``
pins the exact text every run was started with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

#: a row id or record seq drawn from a sequence: 64-bit (on SQLite ``INTEGER PRIMARY KEY``, its 64-bit rowid)
WIDE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcTime(sa.types.TypeDecorator):
    """A moment, written in UTC on every database: an aware time is converted, a naive one is taken as UTC.

    Without it the two databases stored one moment differently: SQLite kept an aware time's
    wall-clock fields and dropped its offset (20:00+08:00 read back as 20:00 UTC), PostgreSQL read a
    naive time in its server's zone. Reads are the driver's (``flows.ledger.utc`` makes them aware).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return in_utc(value) if isinstance(value, datetime) else value


def in_utc(value: datetime) -> datetime:
    """``value`` in UTC (a naive time is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UtcTime()

#: PostgreSQL: the sequence behind ``records.seq`` (a serial column's, ``<table>_<column>_seq``). Named, not looked up
#: with ``pg_get_serial_sequence`` in the writers' statements: evaluated for each seq taken, that lookup was 60% of
#: an attach's execution on the server (docs/benchmarks.md, "Team ingest").
RECORDS_SEQ = "records_seq_seq"

records = sa.Table(
    "records", metadata,
    sa.Column("seq", WIDE_ID, primary_key=True, autoincrement=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("run_id", sa.String(40), index=True),
    sa.Column("step_id", sa.String(80)),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(120)),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # the lane (0: the checkpoints, 1…: the writers') and the record's place in it, from 1, no gaps
    sa.Column("chain", sa.Integer),
    sa.Column("pos", sa.BigInteger),
    sa.UniqueConstraint("chain", "pos", name="uq_records_chain_pos"),
)

sop_versions = sa.Table(
    "sop_versions", metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("sop_id", sa.String(80), nullable=False, index=True),
    sa.Column("version", sa.String(40)),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("first_seen", TS, nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("sop_id", sa.String(80), nullable=False, index=True),
    sa.Column("sop_hash", sa.String(64), sa.ForeignKey("sop_versions.hash"), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("sop_class", sa.String(20), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("initiator", sa.String(120)),
    sa.Column("trigger", sa.Text),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("dedup_key", sa.String(300)),
    # set while the run is open, NULL after: the unique index lets the database decide dedup
    sa.Column("open_key", sa.String(400), unique=True),
    sa.Column("repeats", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_seen_at", TS),
    sa.Column("speed", sa.Float, nullable=False, server_default="1"),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("deadline_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("outcome", sa.String(200)),
    sa.Column("flow_run_id", sa.String(40)),
    sa.Column("suspends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("nudge", sa.Boolean, nullable=False, server_default=sa.false()),
    # a follow-up's parent run and which of its SOP's follow_ups started it: the pair is unique, so no
    # follow-up of one run's end starts twice (the engine's fence; NULLs of runs that are no follow-up differ)
    sa.Column("parent_run_id", sa.String(40), index=True),
    sa.Column("follow_up", sa.String(20)),
    sa.UniqueConstraint("parent_run_id", "follow_up", name="uq_runs_follow_up"),
)

steps = sa.Table(
    "steps", metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("step_id", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("assignee", sa.String(120)),
    sa.Column("ready_at", TS),
    sa.Column("due_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("actor", sa.String(120)),
    sa.Column("note", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("approvals", sa.Text),
    sa.Column("deadline_met", sa.Boolean),
    sa.Column("claimed_by", sa.String(120)),  # the member of the role who said "I'll take it"
    sa.Column("claimed_at", TS),
    # a rework round sends a step back: 1, then 2… (timers of a later round are armed as ``r2:<level>``)
    sa.Column("round", sa.Integer, nullable=False, server_default="1"),
    sa.Column("held_at", TS),  # on hold since (its clock stopped; see ``holds``), NULL when not
)

timers = sa.Table(
    "timers", metadata,
    sa.Column("id", WIDE_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step_id", sa.String(80), nullable=False, server_default=""),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("level", sa.String(20), nullable=False, server_default=""),
    sa.Column("due_at", TS, nullable=False, index=True),
    sa.Column("armed_at", TS, nullable=False),
    sa.Column("fired_at", TS),
    sa.Column("fired_by", sa.String(80)),
    sa.Column("cancelled_at", TS),
    sa.Column("late_ms", sa.Integer),
    # no level of a step's ladder is ever armed (and so fired) twice
    sa.UniqueConstraint("run_id", "step_id", "kind", "level", name="uq_timer_level"),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", WIDE_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), index=True),
    sa.Column("step_id", sa.String(80)),
    sa.Column("at", TS, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("recipient", sa.String(120), nullable=False),
    sa.Column("destination", sa.String(300), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("latency_ms", sa.Integer),
    # the seq of the page's ``notification`` record, and the lane within that page (a person's
    # contacts share one lane, each channel URL is a lane): a lane with no ok row is a failure
    sa.Column("page", sa.BigInteger),
    sa.Column("lane", sa.Integer),
)

# --- metric samples (``POST /v1/metrics``) and the rule firings they caused -------------------
# Data, not audit: not chained. A firing is fenced per (SOP, trigger, series, period) by the
# unique constraint, so two API processes judging the same samples start one run.

metric_samples = sa.Table(
    "metric_samples", metadata,
    sa.Column("id", WIDE_ID, primary_key=True, autoincrement=True),
    sa.Column("metric", sa.String(120), nullable=False),
    sa.Column("series", sa.String(16), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.Index("ix_metric_samples_series_at", "metric", "series", "at"),
)

metric_firings = sa.Table(
    "metric_firings", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sop_id", sa.String(80), nullable=False),
    sa.Column("trigger", sa.Integer, nullable=False),
    sa.Column("series", sa.String(16), nullable=False),
    sa.Column("period_start", TS, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("fired_at", TS, nullable=False),
    sa.Column("run_id", sa.String(40)),
    sa.Column("outcome", sa.String(20)),
    sa.UniqueConstraint("sop_id", "trigger", "series", "period_start", name="uq_metric_firing"),
)

# --- the notification outbox (pages decided by a transition, written in its transaction) ------
# Bookkeeping, not audit: not chained (what was delivered is chained, as ``notification``
# records). A row is claimed for a lease by the process that delivers it: the process that
# committed the transition (no pager process alive) or a pager process (``sop pager``). A row
# still unsent when its lease ends is claimed again, so a page outlives the process that queued it.

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", WIDE_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("step_id", sa.String(80)),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("targets", sa.Text, nullable=False),
    sa.Column("level", sa.Text),
    sa.Column("queued_at", TS, nullable=False),
    sa.Column("claimed_by", sa.String(120)),
    sa.Column("claimed_until", TS),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # set when the page's deliveries are recorded (or it could not be rendered: ``error``)
    sa.Column("done_at", TS),
    sa.Column("error", sa.Text),
    # the roles the page reaches, resolved to people (and why) when it was decided (JSON)
    sa.Column("on_call", sa.Text),
    # claimed lowest first, then in queue order (flows.language.urgency.queue_rank: class, then asking before
    # informational); 0 for a page queued before 0019
    sa.Column("urgency", sa.Integer, nullable=False, server_default="0"),
)
sa.Index("ix_outbox_open", outbox.c.id, sqlite_where=outbox.c.done_at.is_(None),
         postgresql_where=outbox.c.done_at.is_(None))
sa.Index("ix_outbox_urgent", outbox.c.urgency, outbox.c.id, sqlite_where=outbox.c.done_at.is_(None),
         postgresql_where=outbox.c.done_at.is_(None))

# --- digests: informational pages kept for a person with ``digest`` (flows.engine.digest) ------------------
# Bookkeeping, as the outbox: what was kept and what the digest delivered are chained (the ``notification``
# records of the page that kept it and of the digest). An item is claimed for a lease by the pager process that
# sends the digest; ``sent_at`` is set in the transaction that records the digest's delivery.
digest_items = sa.Table(
    "digest_items", metadata,
    sa.Column("id", WIDE_ID, primary_key=True, autoincrement=True),
    sa.Column("person", sa.String(120), nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("step_id", sa.String(80)),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=False),  # the page's title as this person would have read it
    sa.Column("about", sa.Text, nullable=False),  # the SOP and the run's subject (``Crisis PR · lumi``)
    sa.Column("url", sa.String(300), nullable=False),  # the run's page
    sa.Column("at", TS, nullable=False),  # when it happened (the engine's clock)
    sa.Column("kept_at", TS, nullable=False),  # wall time: the digest is due ``digest`` after its oldest item
    sa.Column("record", sa.BigInteger),  # the seq of the page's ``notification`` record
    sa.Column("claimed_by", sa.String(120)),
    sa.Column("claimed_until", TS),
    sa.Column("sent_at", TS),
)
sa.Index("ix_digest_items_open", digest_items.c.person, digest_items.c.id,
         sqlite_where=digest_items.c.sent_at.is_(None), postgresql_where=digest_items.c.sent_at.is_(None))

#: pager processes say they are alive here; while one is, other processes leave pages to it
pagers = sa.Table(
    "pagers", metadata,
    sa.Column("name", sa.String(120), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("beat_at", TS, nullable=False),
    sa.Column("doorbell", sa.String(80)),
)

# an executor process (``sop executor``): its beat, doorbell and the flow runs it is running now, so that a
# flow run left Pending or Running by a dead executor is found and rescheduled (flows.prefect.rescue)
executors = sa.Table(
    "executors", metadata,
    sa.Column("name", sa.String(120), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("beat_at", TS, nullable=False),
    sa.Column("doorbell", sa.String(80)),
    sa.Column("flow_runs", sa.Text, nullable=False, server_default="[]"),
)

# a signed-in browser: only the hash of the cookie's id is kept, with the session's CSRF token
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("person", sa.String(120), nullable=False),
    sa.Column("via", sa.String(20), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("ended_at", TS),
)

# keys taken once by any process of the site while they are fresh (``flows.ledger.once``): a signed request's
# signature (its replay to another API process behind the balancer is refused), a person's sign-in link (one per
# ``RESEND_AFTER_S``, however many API processes the form reaches); a row is dropped once ``until`` has passed
once_keys = sa.Table(
    "once_keys", metadata,
    sa.Column("key", sa.String(120), primary_key=True),
    sa.Column("until", TS, nullable=False),
)
sa.Index("ix_once_keys_until", once_keys.c.until)

# the refused signals of each (SOP, trigger, problem) (``flows.triggers.refusal``): when its owner was last paged
# (``paged_at``: the hour that page covers), how many were refused since, the newest; each refusal is also a
# ``trigger_refused`` record. What the board and ``sop status`` read (the last 24 hours); the key fences the page
refusals = sa.Table(
    "refusals", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("sop_id", sa.String(80), nullable=False),
    sa.Column("trigger", sa.Integer, nullable=False),
    sa.Column("problem", sa.Text, nullable=False),
    sa.Column("paged_at", TS, nullable=False),
    sa.Column("last_at", TS, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)
sa.Index("ix_refusals_last_at", refusals.c.last_at)

# a personal link acts once: its nonce is written when it does (the primary key refuses a replay)
link_uses = sa.Table(
    "link_uses", metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("person", sa.String(120), nullable=False),
    sa.Column("run_id", sa.String(40)),
    sa.Column("step_id", sa.String(80)),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("used_at", TS, nullable=False),
)

# a person standing in as a role's primary for a while (``sop oncall override``); each is also an
# ``oncall_override`` record (``record``: its seq), this table is what the engine reads at each page
oncall_overrides = sa.Table(
    "oncall_overrides", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("role", sa.String(120), nullable=False),
    sa.Column("person", sa.String(120), nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("by", sa.String(120)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("record", sa.BigInteger),
)

# --- silences (``sop silence``, the /silences page) ----------------------------------------------
# A projection of the ``silence_created`` / ``silence_ended`` records, kept in the same transaction,
# so the intake asks "which silences hold now" with one indexed query. Expiry is a time, not a write.

silences = sa.Table(
    "silences", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("matchers", sa.Text, nullable=False),  # JSON: [{"name", "op", "value"}], ops = and =~
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(120), nullable=False),
    sa.Column("created_via", sa.String(20), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False, index=True),
    sa.Column("ended_at", TS),
    sa.Column("ended_by", sa.String(120)),
    sa.Column("end_reason", sa.Text),
)

# --- holds (``sop hold`` / ``sop release``, the step page, the API) ---------------------------------
# A projection of the ``step_held`` / ``step_released`` records, kept in the same transaction: whether a
# step is on hold now, and the timers its hold stopped (``timers``: their ids, JSON), to start again when
# it ends. ``ended``: released (by a person), expired (its maximum passed) or step_ended.

holds = sa.Table(
    "holds", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step_id", sa.String(80), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),  # the step's first hold is 1 (its max timer's level: hold1)
    sa.Column("reason", sa.String(80), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("held_by", sa.String(120), nullable=False),
    sa.Column("held_via", sa.String(20), nullable=False),
    sa.Column("held_at", TS, nullable=False),
    sa.Column("max_at", TS, nullable=False),
    sa.Column("timers", sa.Text, nullable=False, server_default="[]"),
    sa.Column("released_at", TS),
    sa.Column("released_by", sa.String(120)),
    sa.Column("released_via", sa.String(20)),
    sa.Column("ended", sa.String(20)),
    sa.UniqueConstraint("run_id", "step_id", "number", name="uq_hold_number"),
)
