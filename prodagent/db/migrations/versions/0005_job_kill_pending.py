"""Job kill pending: a killed job whose batch job is still to be removed from the batch system

Whoever kills a job (the KillJobs handler, the operator command line, ProdMgrInterface for a
lost or recalled lease) moves it to `killed` and sets `kill_pending_at` in its own transaction;
JobSubmitter, which owns the batch plugin, removes the batch job with no transaction open and
clears the mark. A lost KillJobs then delays the kill but never loses it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pa_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kill_pending_at", sa.Double(), nullable=True))
        batch_op.create_index("ix_pa_job_kill_pending", ["agent", "kill_pending_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pa_job", schema=None) as batch_op:
        batch_op.drop_index("ix_pa_job_kill_pending")
        batch_op.drop_column("kill_pending_at")
