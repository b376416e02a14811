"""Site results are tallied per site in SQL from one covering index: at 250 jobs/s a 30-minute
window holds 450,000 results, which were read whole into the component every evaluation.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ["agent", "site", "at", "ok", "site_fault", "node", "wall_s"]


def upgrade() -> None:
    op.create_index("ix_pa_site_result_tally", "pa_site_result", COLUMNS)
    op.drop_index("ix_pa_site_result_site", table_name="pa_site_result")


def downgrade() -> None:
    op.create_index("ix_pa_site_result_site", "pa_site_result", ["agent", "site", "at"])
    op.drop_index("ix_pa_site_result_tally", table_name="pa_site_result")
