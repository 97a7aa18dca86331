"""On call: overrides of a role's rotation, and who each page's roles meant when it was decided.

``oncall_overrides``: a person standing in as a role's primary from one instant to another
(``sop oncall override``); each is also an ``oncall_override`` record in the chain.
``outbox.on_call``: the roles a page reaches, resolved to people (and why) in the
transition that decided it, so a page delivered later still goes to who was on call then.

Revision ID: 0007_oncall
Revises: 0006_rounds
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_oncall"
down_revision = "0006_rounds"
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("role", sa.String(120), nullable=False),
        sa.Column("person", sa.String(120), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("by", sa.String(120)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("record", sa.Integer),
    )
    op.create_index("ix_oncall_overrides_ends_at", "oncall_overrides", ["ends_at"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("on_call", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("on_call")
    op.drop_index("ix_oncall_overrides_ends_at", "oncall_overrides")
    op.drop_table("oncall_overrides")
