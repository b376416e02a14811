"""Tokens: `allow_commands`, the permission to submit arbitrary `command` payloads (off by
default; existing tokens do not get it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pm_token") as batch:
        batch.add_column(
            sa.Column("allow_commands", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("pm_token") as batch:
        batch.drop_column("allow_commands")
