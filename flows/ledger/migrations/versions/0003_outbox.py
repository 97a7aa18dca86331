"""The notification outbox and the pager processes' heartbeats.

Revision ID: 0003_outbox
Revises: 0002_metric_samples
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0002_metric_samples"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("step_id", sa.String(80)),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("level", sa.Text),
        sa.Column("queued_at", TS, nullable=False),
        sa.Column("claimed_by", sa.String(120)),
        sa.Column("claimed_until", TS),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done_at", TS),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_outbox_open", "outbox", ["id"], sqlite_where=sa.text("done_at IS NULL"),
                    postgresql_where=sa.text("done_at IS NULL"))
    op.create_table(
        "pagers",
        sa.Column("name", sa.String(120), primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("beat_at", TS, nullable=False),
        sa.Column("doorbell", sa.String(80)),
    )


def downgrade() -> None:
    op.drop_table("pagers")
    op.drop_index("ix_outbox_open", table_name="outbox")
    op.drop_table("outbox")
