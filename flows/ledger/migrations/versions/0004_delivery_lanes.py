"""Each ``deliveries`` row says which page and which lane it belongs to.

``page`` is the sequence number of the page's ``notification`` record; ``lane`` numbers the
page's lanes (a person's contacts share one, each channel URL has its own). With them
`sop status` counts a person reached on their second contact as reached. Rows written
before this have neither and count one by one, as before.

Revision ID: 0004_delivery_lanes
Revises: 0003_outbox
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_delivery_lanes"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("page", sa.Integer))
        batch.add_column(sa.Column("lane", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lane")
        batch.drop_column("page")
