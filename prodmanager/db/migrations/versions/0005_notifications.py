"""Notifications: the outbox (`pm_notification`), one delivery per recipient (`pm_delivery`) and
every delivery attempt (`pm_delivery_attempt`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Seconds = sa.Double()


def upgrade() -> None:
    op.create_table(
        "pm_notification",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("cause", sa.String(200), nullable=False),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("created_at", Seconds, nullable=False),
        sa.Column("expanded_at", Seconds, nullable=True),
        sa.UniqueConstraint("cause"),
    )
    op.create_index("ix_pm_notification_expand", "pm_notification", ["expanded_at", "id"])
    op.create_index("ix_pm_notification_request", "pm_notification", ["request_id", "id"])
    op.create_table(
        "pm_delivery",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "notification_id", BigId, sa.ForeignKey("pm_notification.id"), nullable=False
        ),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("target_sha256", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Seconds, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", Seconds, nullable=False),
        sa.Column("updated_at", Seconds, nullable=False),
        sa.UniqueConstraint("message_id"),
        sa.UniqueConstraint("notification_id", "channel", "target_sha256", name="uq_pm_delivery"),
    )
    op.create_index("ix_pm_delivery_due", "pm_delivery", ["state", "next_attempt_at"])
    op.create_index(
        "ix_pm_delivery_repeat", "pm_delivery", ["target_sha256", "content_sha256", "created_at"]
    )
    op.create_table(
        "pm_delivery_attempt",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", BigId, sa.ForeignKey("pm_delivery.id"), nullable=False),
        sa.Column("at", Seconds, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_s", Seconds, nullable=False),
    )
    op.create_index(
        "ix_pm_delivery_attempt_delivery", "pm_delivery_attempt", ["delivery_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("pm_delivery_attempt")
    op.drop_table("pm_delivery")
    op.drop_table("pm_notification")
