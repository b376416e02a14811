"""The agent's tables (SQLAlchemy Core). Migrations in `migrations/` create exactly these.

Times are epoch seconds in DOUBLE columns: the message service compares them with the caller's
clock, and one agent runs on one host.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

Time = sa.Double()
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Name = sa.String(100)

ms_process = sa.Table(
    "ms_process",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("component", Name, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("heartbeat_at", Time, nullable=False),
    sa.Column("stopped_at", Time, nullable=True),
    sa.Column("handled", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_ms_process_component", "agent", "component", "heartbeat_at"),
)

ms_subscription = sa.Table(
    "ms_subscription",
    metadata,
    sa.Column("agent", Name, primary_key=True),
    sa.Column("component", Name, primary_key=True),
    sa.Column("msg_type", Name, primary_key=True),
    sa.Index("ix_ms_subscription_type", "agent", "msg_type"),
)

ms_message = sa.Table(
    "ms_message",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("component", Name, nullable=False),
    sa.Column("msg_type", Name, nullable=False),
    sa.Column("payload", LongText, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("source", Name, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    # When the message may next be claimed: publish time plus delay, or the end of a claim's lease.
    sa.Column("available_at", Time, nullable=False),
    sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_ms_message_claim", "agent", "component", sa.desc("priority"), "available_at"),
    sqlite_autoincrement=True,  # ids are never reused: history and dead letters key on them
)

ms_dead_letter = sa.Table(
    "ms_dead_letter",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
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
    sa.Index("ix_ms_dead_letter_component", "agent", "component"),
)

ms_history = sa.Table(
    "ms_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("agent", Name, nullable=False),
    sa.Column("component", Name, nullable=False),
    sa.Column("msg_type", Name, nullable=False),
    sa.Column("source", Name, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("handled_at", Time, nullable=False),
    sa.Column("deliveries", sa.Integer, nullable=False),
    sa.Index("ix_ms_history_handled", "handled_at"),
)
