"""Keys taken once across processes: ``once_keys`` (a signed request's signature, a person's sign-in link).

Each API process remembered them in its memory: behind a balancer, a replayed signed Grafana request was
taken by the process that had not seen it, and a person asking for a sign-in link through two processes got
two. ``flows.ledger.once`` now asks the database.

Revision ID: 0018_once_keys
Revises: 0017_caseless_keys
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_once_keys"
down_revision = "0017_caseless_keys"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "once_keys",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("until", TS, nullable=False),
    )
    op.create_index("ix_once_keys_until", "once_keys", ["until"])


def downgrade() -> None:
    op.drop_index("ix_once_keys_until", table_name="once_keys")
    op.drop_table("once_keys")
