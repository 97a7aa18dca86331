"""Metric samples and metric-rule firings (trigger intake, ``POST /v1/metrics``).

Revision ID: 0002_metric_samples
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_metric_samples"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("metric", sa.String(120), nullable=False),
        sa.Column("series", sa.String(16), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index("ix_metric_samples_series_at", "metric_samples", ["metric", "series", "at"])
    op.create_table(
        "metric_firings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sop_id", sa.String(80), nullable=False),
        sa.Column("trigger", sa.Integer, nullable=False),
        sa.Column("series", sa.String(16), nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("fired_at", TS, nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("outcome", sa.String(20)),
        sa.UniqueConstraint("sop_id", "trigger", "series", "period_start", name="uq_metric_firing"),
    )


def downgrade() -> None:
    op.drop_table("metric_firings")
    op.drop_index("ix_metric_samples_series_at", table_name="metric_samples")
    op.drop_table("metric_samples")
