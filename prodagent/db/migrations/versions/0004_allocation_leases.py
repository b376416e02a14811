"""Allocation leases: an agent-side allocation row is one lease (ProdManager id and lease epoch)

Rows were keyed by ProdManager's allocation id alone, so two agents on one database shared a
row, and a lease lost and handed out again came back as the old row. New rows are keyed
`{pm_id}.{lease_epoch}`; rows recorded before keep their id (pm_id from it, epoch 0).
A merged file ProdManager refused says why (`pa_file.report_error`), instead of passing for
reported.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pa_allocation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pm_id", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("lease_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_pa_allocation_pm", ["agent", "pm_id"], unique=False)
    op.add_column("pa_file", sa.Column("report_error", sa.Text(), nullable=True))
    table = sa.table("pa_allocation", sa.column("id", sa.String), sa.column("pm_id", sa.BigInteger))
    rows = op.get_bind().execute(sa.select(table.c.id)).scalars().all()
    for allocation_id in rows:
        if allocation_id.isdigit():
            op.execute(table.update().where(table.c.id == allocation_id).values(pm_id=int(allocation_id)))


def downgrade() -> None:
    op.drop_column("pa_file", "report_error")
    with op.batch_alter_table("pa_allocation", schema=None) as batch_op:
        batch_op.drop_index("ix_pa_allocation_pm")
        batch_op.drop_column("lease_epoch")
        batch_op.drop_column("pm_id")
