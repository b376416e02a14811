"""Indexes for metrics scrapes: jobs by state, site and type, and allocations by state with
their lease expiry, each read from the index alone (a scrape of 100,000 jobs then walks no
table rows).

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
    op.create_index(
        "ix_pa_allocation_leases", "pa_allocation", ["agent", "state", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_pa_allocation_leases", table_name="pa_allocation")
    op.drop_index("ix_pa_job_metrics", table_name="pa_job")
