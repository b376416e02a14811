"""Parentage across tasks: `pa_file_input` names, by LFN, the input files the job that produced
an unmerged file read (for a processing job: its allocation's files, which may be another
request's merged files or files outside this agent's catalog).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pa_file_input",
        sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("lfn", sa.String(500), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("pa_file_input")
