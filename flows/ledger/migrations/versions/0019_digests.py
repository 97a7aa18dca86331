"""Digests and urgent pages first: ``digest_items`` holds the informational pages kept for a person's digest, and
``outbox.urgency`` orders a backlogged outbox (class, then asking before informational, then queue order).

A page queued before this release has urgency 0: it is claimed before the others, in queue order, as it would have
been. Downgrading drops kept items that were not sent yet (their pages' records say they were kept).

Revision ID: 0019_digests
Revises: 0018_once_keys
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_digests"
down_revision = "0018_once_keys"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
WIDE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN = sa.text("done_at IS NULL")
UNSENT = sa.text("sent_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("urgency", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_outbox_urgent", "outbox", ["urgency", "id"], sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_table(
        "digest_items",
        sa.Column("id", WIDE_ID, primary_key=True, autoincrement=True),
        sa.Column("person", sa.String(120), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("step_id", sa.String(80)),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("about", sa.Text, nullable=False),
        sa.Column("url", sa.String(300), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kept_at", TS, nullable=False),
        sa.Column("record", sa.BigInteger),
        sa.Column("claimed_by", sa.String(120)),
        sa.Column("claimed_until", TS),
        sa.Column("sent_at", TS),
    )
    op.create_index("ix_digest_items_open", "digest_items", ["person", "id"], sqlite_where=UNSENT,
                    postgresql_where=UNSENT)


def downgrade() -> None:
    op.drop_index("ix_digest_items_open", table_name="digest_items")
    op.drop_table("digest_items")
    op.drop_index("ix_outbox_urgent", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("urgency")
