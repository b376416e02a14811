"""Parentage across tasks: `pm_file_parent` names, by LFN, the files of other tasks (or outside
ProdManager) a merged file derives from, as its agent reported them. Per-step progress:
`pm_job_event.steps` holds how each step of a multi-step attempt ended (JSON).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pm_file_parent",
        sa.Column("file_id", BigId, sa.ForeignKey("pm_file.id"), primary_key=True, autoincrement=False),
        sa.Column("lfn", sa.String(500), primary_key=True),
    )
    with op.batch_alter_table("pm_job_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("steps", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pm_job_event", schema=None) as batch_op:
        batch_op.drop_column("steps")
    op.drop_table("pm_file_parent")
