"""Run gate: the state of each run of a processing request as ProdManager last gave it

ProdMgrInterface copies ProdManager's run states (`GET /requests/{id}/runs`) for requests whose
merge is per run; MergeSensor merges a run's outputs only while its row says `ready`.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pa_run",
        sa.Column("agent", sa.String(100), primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("run", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pa_run")
