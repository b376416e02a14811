"""Runs of processing requests: an operator's decision on a run that needs attention; the
physical name of a file (`pm_file.pfn`), so a chained request's jobs find their input.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pm_run",
        sa.Column("request_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                  sa.ForeignKey("pm_request.id"), primary_key=True),
        sa.Column("run", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("decision", sa.String(12), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
    )


    with op.batch_alter_table("pm_file") as batch:
        batch.add_column(sa.Column("pfn", sa.String(1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pm_file") as batch:
        batch.drop_column("pfn")
    op.drop_table("pm_run")
