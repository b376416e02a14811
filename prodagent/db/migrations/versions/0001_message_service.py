"""The message service: processes, subscriptions, messages, dead letters and history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Time = sa.Double()
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Name = sa.String(100)
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "ms_process",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent", Name, nullable=False),
        sa.Column("component", Name, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", Time, nullable=False),
        sa.Column("heartbeat_at", Time, nullable=False),
        sa.Column("stopped_at", Time, nullable=True),
        sa.Column("handled", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_ms_process_component", "ms_process", ["agent", "component", "heartbeat_at"])
    op.create_table(
        "ms_subscription",
        sa.Column("agent", Name, primary_key=True),
        sa.Column("component", Name, primary_key=True),
        sa.Column("msg_type", Name, primary_key=True),
    )
    op.create_index("ix_ms_subscription_type", "ms_subscription", ["agent", "msg_type"])
    op.create_table(
        "ms_message",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("agent", Name, nullable=False),
        sa.Column("component", Name, nullable=False),
        sa.Column("msg_type", Name, nullable=False),
        sa.Column("payload", LongText, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("source", Name, nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("available_at", Time, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_ms_message_claim",
        "ms_message",
        ["agent", "component", sa.text("priority DESC"), "available_at"],
    )
    op.create_table(
        "ms_dead_letter",
        sa.Column("id", BigId, primary_key=True, autoincrement=False),
        sa.Column("agent", Name, nullable=False),
        sa.Column("component", Name, nullable=False),
        sa.Column("msg_type", Name, nullable=False),
        sa.Column("payload", LongText, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("source", Name, nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("failed_at", Time, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_ms_dead_letter_component", "ms_dead_letter", ["agent", "component"])
    op.create_table(
        "ms_history",
        sa.Column("id", BigId, primary_key=True, autoincrement=False),
        sa.Column("agent", Name, nullable=False),
        sa.Column("component", Name, nullable=False),
        sa.Column("msg_type", Name, nullable=False),
        sa.Column("source", Name, nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("handled_at", Time, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
    )
    op.create_index("ix_ms_history_handled", "ms_history", ["handled_at"])


def downgrade() -> None:
    for table in ("ms_history", "ms_dead_letter", "ms_message", "ms_subscription", "ms_process"):
        op.drop_table(table)
