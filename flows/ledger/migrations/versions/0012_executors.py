"""Executors: ``executors`` holds each ``sop executor`` process's beat, doorbell and in-flight flow runs.

Revision ID: 0012_executors
Revises: 0010_follow_ups
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_executors"
down_revision = "0010_follow_ups"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "executors",
        sa.Column("name", sa.String(120), primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("beat_at", TS, nullable=False),
        sa.Column("doorbell", sa.String(80)),
        sa.Column("flow_runs", sa.Text, nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    op.drop_table("executors")
