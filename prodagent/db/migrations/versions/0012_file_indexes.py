"""Indexes on files by job and by state: Cleanup finds the files of given jobs and the void
files by index, not by a scan of the whole file table (whose row locks stalled the other
components at 100,000 files).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pa_file_job", "pa_file", ["job_id", "state"])
    op.create_index("ix_pa_file_state", "pa_file", ["state"])


def downgrade() -> None:
    op.drop_index("ix_pa_file_state", table_name="pa_file")
    op.drop_index("ix_pa_file_job", table_name="pa_file")
