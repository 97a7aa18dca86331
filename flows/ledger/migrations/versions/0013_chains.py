"""Lanes: each record is chained within its lane (``chain``, ``pos``) so writers of different runs
do not wait for one another; the records written before stay one chain (``chain`` NULL) and keep
verifying as they were written. The first checkpoint (written by the ledger) folds that chain's head.

Revision ID: 0013_chains
Revises: 0012_executors
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_chains"
down_revision = "0012_executors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("chain", sa.Integer))
        batch.add_column(sa.Column("pos", sa.Integer))
        batch.create_unique_constraint("uq_records_chain_pos", ["chain", "pos"])


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_constraint("uq_records_chain_pos", type_="unique")
        batch.drop_column("pos")
        batch.drop_column("chain")
