"""Automatic job sizing: `pm_sizing` holds each request's estimate on each agent (state, events
per job, memory, time, the figures and formula behind them), as the agent last pushed it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pm_sizing",
        sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), primary_key=True, autoincrement=False),
        sa.Column("agent", sa.String(100), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("events_per_job", sa.BigInteger, nullable=True),
        sa.Column("memory_mb", sa.BigInteger, nullable=True),
        sa.Column("time_s", sa.BigInteger, nullable=True),
        sa.Column("figures", sa.Text, nullable=False),
        sa.Column("formula", sa.String(2000), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("computed_at", sa.Double(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pm_sizing")
