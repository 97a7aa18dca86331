"""Rework rounds: ``steps.round`` counts how often a step was asked (1, then 2 after a rejection sent it back).

Revision ID: 0006_rounds
Revises: 0005_people
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_rounds"
down_revision = "0005_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("round", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("round")
