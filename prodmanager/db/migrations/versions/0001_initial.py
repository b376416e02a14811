"""Initial ProdManager schema: requests, history, allocations, files, agents, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Seconds = sa.Double()


def upgrade() -> None:
    op.create_table(
        "pm_request",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("total_events", sa.BigInteger, nullable=False),
        sa.Column("total_jobs", sa.Integer, nullable=False),
        sa.Column("run_number", sa.Integer, nullable=False),
        sa.Column("sites", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("parent_id", BigId, sa.ForeignKey("pm_request.id"), nullable=True),
        sa.Column("created_at", Seconds, nullable=False),
        sa.Column("updated_at", Seconds, nullable=False),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_pm_request_state", "pm_request", ["state", "priority"])
    op.create_index("ix_pm_request_owner", "pm_request", ["owner"])

    op.create_table(
        "pm_request_history",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
        sa.Column("from_state", sa.String(20), nullable=True),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("at", Seconds, nullable=False),
    )
    op.create_index("ix_pm_request_history_request", "pm_request_history", ["request_id", "id"])

    op.create_table(
        "pm_allocation",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
        sa.Column("job_index", sa.Integer, nullable=False),
        sa.Column("first_event", sa.BigInteger, nullable=False),
        sa.Column("n_events", sa.BigInteger, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("input_files", sa.Text, nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("agent", sa.String(100), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_expires", Seconds, nullable=False, server_default="0"),
        sa.Column("lease_seconds", Seconds, nullable=False, server_default="0"),
        sa.Column("events_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("job_state", sa.String(20), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("updated_at", Seconds, nullable=False),
        sa.UniqueConstraint("request_id", "job_index", name="uq_pm_allocation_job"),
    )
    op.create_index(
        "ix_pm_allocation_queue", "pm_allocation", ["request_id", "state", "lease_expires"]
    )
    op.create_index("ix_pm_allocation_agent", "pm_allocation", ["agent", "state"])

    op.create_table(
        "pm_file",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("lfn", sa.String(500), nullable=False),
        sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
        sa.Column("allocation_id", BigId, sa.ForeignKey("pm_allocation.id"), nullable=True),
        sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.String(100), nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("merged_into", BigId, sa.ForeignKey("pm_file.id"), nullable=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("created_at", Seconds, nullable=False),
        sa.UniqueConstraint("lfn"),
    )
    op.create_index("ix_pm_file_request", "pm_file", ["request_id", "kind", "state"])
    op.create_index("ix_pm_file_allocation", "pm_file", ["allocation_id"])

    op.create_table(
        "pm_agent",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("sites", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("token_name", sa.String(100), nullable=False),
        sa.Column("registered_at", Seconds, nullable=False),
        sa.Column("last_seen", Seconds, nullable=False),
    )

    op.create_table(
        "pm_token",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", Seconds, nullable=False),
        sa.Column("revoked_at", Seconds, nullable=True),
        sa.UniqueConstraint("token_sha256"),
    )


def downgrade() -> None:
    for table in (
        "pm_token",
        "pm_agent",
        "pm_file",
        "pm_allocation",
        "pm_request_history",
        "pm_request",
    ):
        op.drop_table(table)
