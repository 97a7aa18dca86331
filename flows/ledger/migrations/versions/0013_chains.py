"""Lanes: each record is chained within its lane (``chain``, ``pos``) so writers of different runs
do not wait for one another; the records written before stay one chain (``chain`` NULL) and keep
verifying as they were written. The first checkpoint (written by the ledger) folds that chain's head.
On PostgreSQL the seq column's sequence is moved past the records there are (lanes' writers take seqs from it).
Stop every writer of the older version before upgrading: it numbers records itself.

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
    if op.get_bind().dialect.name == "postgresql":
        # Before lanes the one writer numbered records itself (the last seq + 1): the column's sequence never
        # moved. Lanes' writers take seqs from it, so it must start past the records there are.
        op.execute("SELECT setval(pg_get_serial_sequence('records', 'seq'), COALESCE(MAX(seq), 0) + 1, false) "
                   "FROM records")


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_constraint("uq_records_chain_pos", type_="unique")
        batch.drop_column("pos")
        batch.drop_column("chain")
