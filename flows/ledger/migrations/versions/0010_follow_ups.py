"""Follow-ups: ``runs.parent_run_id`` and ``runs.follow_up`` link a run started by another run's end to it,
unique together (the fence: one follow-up of one run's end starts once).

Revision ID: 0010_follow_ups
Revises: 0009_holds
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_follow_ups"
down_revision = "0009_holds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(40)))
        batch.add_column(sa.Column("follow_up", sa.String(20)))
        batch.create_index("ix_runs_parent_run_id", ["parent_run_id"])
        batch.create_unique_constraint("uq_runs_follow_up", ["parent_run_id", "follow_up"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_follow_up", type_="unique")
        batch.drop_index("ix_runs_parent_run_id")
        batch.drop_column("follow_up")
        batch.drop_column("parent_run_id")
