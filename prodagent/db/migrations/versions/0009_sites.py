"""Several sites per agent: site circuit breakers, per-attempt site results, black-hole nodes

`pa_site_health` holds each site's breaker state (table in prodagent.jobs.site_states),
`pa_site_event` every change with its reason and figures, `pa_site_result` one row per ended
attempt (site, node, success, site-caused failure), `pa_node_exclusion` nodes kept out of
submission for a while; `pa_job.node` records where an attempt ran. Automatic job sizing:
`pa_job.scout` marks scout jobs, `pa_sizing` holds each request's estimate. Agents on demand:
`pa_drain` marks an agent being drained.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Name = sa.String(100)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
JsonText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("pa_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", Name, nullable=True))
        batch_op.add_column(sa.Column("scout", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "pa_drain",
        sa.Column("agent", Name, primary_key=True),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "pa_sizing",
        sa.Column("agent", Name, primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("events_per_job", sa.BigInteger, nullable=True),
        sa.Column("memory_mb", sa.Integer, nullable=True),
        sa.Column("time_s", sa.Integer, nullable=True),
        sa.Column("figures", JsonText, nullable=False),
        sa.Column("formula", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "pa_site_health",
        sa.Column("agent", Name, primary_key=True),
        sa.Column("site", Name, primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "pa_site_event",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("agent", Name, nullable=False),
        sa.Column("site", Name, nullable=False),
        sa.Column("node", Name, nullable=True),
        sa.Column("from_state", sa.String(20), nullable=True),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("figures", JsonText, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
    )
    op.create_index("ix_pa_site_event_site", "pa_site_event", ["agent", "site", "id"])
    op.create_table(
        "pa_site_result",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("agent", Name, nullable=False),
        sa.Column("site", Name, nullable=False),
        sa.Column("node", Name, nullable=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("site_fault", sa.Boolean, nullable=False),
        sa.Column("wall_s", sa.Double(), nullable=True),
    )
    op.create_index("ix_pa_site_result_site", "pa_site_result", ["agent", "site", "at"])
    op.create_table(
        "pa_node_exclusion",
        sa.Column("agent", Name, primary_key=True),
        sa.Column("site", Name, primary_key=True),
        sa.Column("node", Name, primary_key=True),
        sa.Column("until", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pa_node_exclusion")
    op.drop_index("ix_pa_site_result_site", table_name="pa_site_result")
    op.drop_table("pa_site_result")
    op.drop_index("ix_pa_site_event_site", table_name="pa_site_event")
    op.drop_table("pa_site_event")
    op.drop_table("pa_site_health")
    op.drop_table("pa_sizing")
    op.drop_table("pa_drain")
    with op.batch_alter_table("pa_job", schema=None) as batch_op:
        batch_op.drop_column("scout")
        batch_op.drop_column("node")
