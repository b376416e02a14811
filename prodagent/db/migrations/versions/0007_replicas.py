"""Replicas: the copies of each file (work area, a site's storage element, the archive)

A file of the catalog (`pa_file`) can have several replicas, each on one storage element with its
physical name, size, adler32 and state (`prodagent.storage.replica_states`): the unmerged output
on the site's element, the merged file there, its archive copy.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pa_replica",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("element", sa.String(length=100), nullable=False),
        sa.Column("pfn", sa.String(length=600), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("adler32", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("file_id", "element", name="uq_pa_replica_file_element"),
    )
    op.create_index("ix_pa_replica_state", "pa_replica", ["state", "role"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pa_replica_state", table_name="pa_replica")
    op.drop_table("pa_replica")
