"""Refused signals: ``refusals`` holds, per SOP, trigger and problem, when its owner was last paged and how many
signals were refused since (``flows.triggers.refusal``).

An alert an SOP's trigger matched but could not start (a label its inputs read missing) was answered 200 and logged
once: nobody heard of it. Each is now a ``trigger_refused`` record, and this table fences the owner's page (once an
hour per SOP, trigger and problem) and is what the board and ``sop status`` read.

Revision ID: 0020_refusals
Revises: 0019_digests
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_refusals"
down_revision = "0019_digests"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "refusals",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("sop_id", sa.String(80), nullable=False),
        sa.Column("trigger", sa.Integer, nullable=False),
        sa.Column("problem", sa.Text, nullable=False),
        sa.Column("paged_at", TS, nullable=False),
        sa.Column("last_at", TS, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_refusals_last_at", "refusals", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_refusals_last_at", table_name="refusals")
    op.drop_table("refusals")
