"""People act as themselves: sessions, single-use links, who holds a step.

``sessions``: a signed-in person's browser session (only a hash of its id is stored) with
its CSRF token. ``link_uses``: each personal link acts once; its nonce is written when it
does, so a replay is refused by the primary key. ``steps.claimed_by``/``claimed_at``: the
member of a role who said "I'll take it".

Revision ID: 0005_people
Revises: 0004_delivery_lanes
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_people"
down_revision = "0004_delivery_lanes"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("person", sa.String(120), nullable=False),
        sa.Column("via", sa.String(20), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS),
    )
    op.create_table(
        "link_uses",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("person", sa.String(120), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("step_id", sa.String(80)),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("used_at", TS, nullable=False),
    )
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(120)))
        batch.add_column(sa.Column("claimed_at", TS))


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
    op.drop_table("link_uses")
    op.drop_table("sessions")
