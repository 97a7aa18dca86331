"""Silences: ``silences`` holds who silenced which triggers, why, and until when (``sop silence``).

Revision ID: 0008_silences
Revises: 0007_oncall
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_silences"
down_revision = "0007_oncall"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("matchers", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_via", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("ended_by", sa.String(120)),
        sa.Column("end_reason", sa.Text),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])


def downgrade() -> None:
    op.drop_index("ix_silences_ends_at", "silences")
    op.drop_table("silences")
