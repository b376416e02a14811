"""Jobs per allocation: `pa_allocation.n_jobs`, how many jobs ProdManager says the allocation
holds (a guess for `per_job: auto`), so that the agent counts the jobs of allocations acquired
but not yet cut as waiting. Rows recorded before: 1.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pa_allocation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("n_jobs", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("pa_allocation", schema=None) as batch_op:
        batch_op.drop_column("n_jobs")
