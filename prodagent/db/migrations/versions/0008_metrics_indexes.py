"""Indexes for metrics scrapes: jobs by state, site and type, and finished jobs' wall time, read
from the index alone (a scrape of 100,000 jobs then takes milliseconds, not a table walk).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pa_job_metrics", "pa_job", ["agent", "state", "site", "job_type"])
    op.create_index("ix_pa_job_wall", "pa_job", ["agent", "wall_s"])


def downgrade() -> None:
    op.drop_index("ix_pa_job_wall", table_name="pa_job")
    op.drop_index("ix_pa_job_metrics", table_name="pa_job")
