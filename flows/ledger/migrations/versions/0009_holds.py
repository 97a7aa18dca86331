"""Holds: ``holds`` keeps which steps are on hold (their clock stopped), why, by whom, until when (``sop hold``).

Revision ID: 0009_holds
Revises: 0008_silences
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_holds"
down_revision = "0008_silences"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("step_id", sa.String(80), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
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
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("held_at", TS))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("held_at")
    op.drop_table("holds")
