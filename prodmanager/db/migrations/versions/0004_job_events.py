"""Job detail pushed by agents for the web monitor: `pm_job_event` (each state change of an
agent's job, unique by agent and the agent's sequence number) and `pm_job_log` (the log tail of a
failed attempt); `pm_agent.status`, `status_at` (its components as it last reported them);
`pm_allocation.resubmit_at` (a resubmit of its paused job asked for, until the agent acts); three indexes of `pm_allocation` for the monitor's reads (counters and the last
change per request, from the index alone; finished allocations per agent over a time window; leased ones per agent).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pm_job_event",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("allocation_id", BigId, nullable=False),
        sa.Column("request_id", BigId, nullable=False),
        sa.Column("job_name", sa.String(200), nullable=False),
        sa.Column("retry", sa.Integer, nullable=False),
        sa.Column("from_state", sa.String(20), nullable=True),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("error_class", sa.String(64), nullable=True),
        sa.Column("resources", sa.Text, nullable=True),
        sa.UniqueConstraint("agent", "seq", name="uq_pm_job_event_seq"),
    )
    op.create_index("ix_pm_job_event_allocation", "pm_job_event", ["allocation_id", "id"])
    op.create_index(
        "ix_pm_job_event_request", "pm_job_event", ["request_id", "error_class", "site"]
    )
    op.create_table(
        "pm_job_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "event_id", BigId, sa.ForeignKey("pm_job_event.id"), nullable=False, unique=True
        ),
        sa.Column("allocation_id", BigId, nullable=False),
        sa.Column("text", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
    )
    op.create_index("ix_pm_job_log_allocation", "pm_job_log", ["allocation_id"])
    with op.batch_alter_table("pm_allocation") as batch:
        batch.add_column(sa.Column("resubmit_at", sa.Double(), nullable=True))
    with op.batch_alter_table("pm_agent") as batch:
        batch.add_column(sa.Column("status", sa.Text, nullable=True))
        batch.add_column(sa.Column("status_at", sa.Double(), nullable=True))
    op.create_index(
        "ix_pm_allocation_activity",
        "pm_allocation",
        ["request_id", "state", "lease_expires", "updated_at", "n_events", "events_done"],
    )
    op.create_index(
        "ix_pm_allocation_finished", "pm_allocation", ["state", "updated_at", "agent"]
    )
    op.create_index(
        "ix_pm_allocation_leased", "pm_allocation", ["state", "lease_expires", "agent", "job_state"]
    )


def downgrade() -> None:
    with op.batch_alter_table("pm_allocation") as batch:
        batch.drop_column("resubmit_at")
    with op.batch_alter_table("pm_agent") as batch:
        batch.drop_column("status_at")
        batch.drop_column("status")
    op.drop_index("ix_pm_allocation_leased", "pm_allocation")
    op.drop_index("ix_pm_allocation_finished", "pm_allocation")
    op.drop_index("ix_pm_allocation_activity", "pm_allocation")
    op.drop_table("pm_job_log")
    op.drop_table("pm_job_event")
