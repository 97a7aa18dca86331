"""Record seqs and places, and the ids of the tables that grow with every alert or page, as 64-bit integers on
PostgreSQL.

A PostgreSQL writer takes its seqs from the ``records.seq`` sequence in blocks (the unused ones are gaps), so
a 32-bit seq ran out after about 2.1 billion seqs: a few months of a busy team's alerts; a lane's places
(``records.pos``) would have run out later. SQLite's integers are
64-bit already (nothing to do there). Each table is rewritten once, under its lock: on a large ledger, stop the
writers first (docs/team.md, "Upgrading").

Revision ID: 0014_wide_ids
Revises: 0013_chains
Create Date: 2026-12-05
"""

from alembic import op

revision = "0014_wide_ids"
down_revision = "0013_chains"
branch_labels = None
depends_on = None

#: table → its columns that hold a record's seq or a row id drawn from a sequence
WIDENED = {
    "records": ["seq", "pos"],  # pos: a record's place in its lane (one process's intake writes one lane)
    "deliveries": ["id", "page"],  # page: its notification record's seq
    "oncall_overrides": ["record"],  # its oncall_override record's seq
    "outbox": ["id"],
    "timers": ["id"],
    "metric_samples": ["id"],
}
#: the columns above that draw from a sequence of their own (SERIAL): it widens too
SEQUENCED = [("records", "seq"), ("deliveries", "id"), ("outbox", "id"), ("timers", "id"), ("metric_samples", "id")]


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in WIDENED.items():
        op.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} TYPE {to}" for c in columns))
    for table, column in SEQUENCED:
        op.execute(f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {to}', "
                   f"pg_get_serial_sequence('{table}', '{column}')); END $$")


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    _retype("integer")  # refused by PostgreSQL once a value is past 2**31 - 1
