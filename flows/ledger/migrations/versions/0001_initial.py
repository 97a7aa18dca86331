"""The run ledger: records (hash chain), SOP versions, runs, steps, timers, deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("run_id", sa.String(40), index=True),
        sa.Column("step_id", sa.String(80)),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(120)),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "sop_versions",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("sop_id", sa.String(80), nullable=False, index=True),
        sa.Column("version", sa.String(40)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
    )
    op.create_table(
        "runs",
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
    )
    op.create_table(
        "steps",
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
    )
    op.create_table(
        "timers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
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
        sa.UniqueConstraint("run_id", "step_id", "kind", "level", name="uq_timer_level"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
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
    )


def downgrade() -> None:
    for table in ("deliveries", "timers", "steps", "runs", "sop_versions", "records"):
        op.drop_table(table)
