"""ProdManager's tables (SQLAlchemy Core). Prefixed `pm_` so they can share a database with the
agent's tables. Times are UNIX seconds (double) written by the server, so SQLite and MariaDB
behave the same. The Alembic migrations in `migrations/versions/` must build exactly this.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

# BIGINT ids on MariaDB; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Seconds = sa.Double()

request = sa.Table(
    "pm_request",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("total_events", sa.BigInteger, nullable=False),
    sa.Column("total_jobs", sa.Integer, nullable=False),
    sa.Column("run_number", sa.Integer, nullable=False),
    sa.Column("sites", sa.Text, nullable=False),  # JSON {"whitelist": [...], "blacklist": [...]}
    sa.Column("spec", sa.Text, nullable=False),  # the validated workflow, as JSON
    sa.Column("spec_sha256", sa.String(64), nullable=False),
    sa.Column("parent_id", BigId, sa.ForeignKey("pm_request.id"), nullable=True),
    sa.Column("created_at", Seconds, nullable=False),
    sa.Column("updated_at", Seconds, nullable=False),
    sa.Index("ix_pm_request_state", "state", "priority"),
    sa.Index("ix_pm_request_owner", "owner"),
)

request_history = sa.Table(
    "pm_request_history",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
    sa.Column("from_state", sa.String(20), nullable=True),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("at", Seconds, nullable=False),
    sa.Index("ix_pm_request_history_request", "request_id", "id"),
)

allocation = sa.Table(
    "pm_allocation",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
    sa.Column("job_index", sa.Integer, nullable=False),
    sa.Column("first_event", sa.BigInteger, nullable=False),
    sa.Column("n_events", sa.BigInteger, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("input_files", sa.Text, nullable=True),  # JSON list, processing workflows only
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
    # an operator or the owner asked to resubmit its job waiting for an operator (migration 0004);
    # cleared when the agent reports the job moving on
    sa.Column("resubmit_at", Seconds, nullable=True),
    # jobs the allocation holds (migration 0007): acquire and capacity count these, not rows; for
    # `per_job: auto` a guess (guessed job lengths), agents cut it to the measured length
    sa.Column("n_jobs", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("request_id", "job_index", name="uq_pm_allocation_job"),
    # acquire scans open allocations of one request, never-leased (expiry 0) first
    sa.Index("ix_pm_allocation_queue", "request_id", "state", "lease_expires"),
    sa.Index("ix_pm_allocation_agent", "agent", "state"),
    # the web monitor (migration 0004): counters and last change per request read from an index
    # alone; finished and leased allocations per agent
    sa.Index(
        "ix_pm_allocation_activity",
        "request_id", "state", "lease_expires", "updated_at", "n_events", "events_done",
    ),
    sa.Index("ix_pm_allocation_finished", "state", "updated_at", "agent"),
    sa.Index("ix_pm_allocation_leased", "state", "lease_expires", "agent", "job_state"),
)

file = sa.Table(
    "pm_file",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("lfn", sa.String(500), nullable=False, unique=True),
    sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
    sa.Column("allocation_id", BigId, sa.ForeignKey("pm_allocation.id"), nullable=True),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("kind", sa.String(10), nullable=False),  # unmerged | merged
    sa.Column("state", sa.String(12), nullable=False),  # valid | superseded | merged
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.String(100), nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("merged_into", BigId, sa.ForeignKey("pm_file.id"), nullable=True),
    sa.Column("agent", sa.String(100), nullable=False),
    sa.Column("created_at", Seconds, nullable=False),
    sa.Column("pfn", sa.String(1000), nullable=True),  # where the agent wrote it (migration 0003)
    sa.Index("ix_pm_file_request", "request_id", "kind", "state"),
    sa.Index("ix_pm_file_allocation", "allocation_id"),
)

# Parentage across tasks (migration 0006): the files, by LFN, a merged file derives from in
# other tasks (a chained request's producer) or outside ProdManager, as its agent reported them.
file_parent = sa.Table(
    "pm_file_parent",
    metadata,
    sa.Column("file_id", BigId, sa.ForeignKey("pm_file.id"), primary_key=True, autoincrement=False),
    sa.Column("lfn", sa.String(500), primary_key=True),
)

# Job detail pushed by agents (migration 0004): each state change of an agent's job, and the log
# tail of each failed attempt, kept here so the monitor shows them after the agent cleaned up.
job_event = sa.Table(
    "pm_job_event",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("agent", sa.String(100), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("allocation_id", BigId, nullable=False),
    sa.Column("request_id", BigId, nullable=False),
    sa.Column("job_name", sa.String(200), nullable=False),
    sa.Column("retry", sa.Integer, nullable=False),
    sa.Column("from_state", sa.String(20), nullable=True),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("at", Seconds, nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("site", sa.String(64), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("error_class", sa.String(64), nullable=True),
    sa.Column("resources", sa.Text, nullable=True),  # JSON {memory_mb, wall_s, cpu_s, max_rss_mb}
    sa.Column("steps", sa.Text, nullable=True),  # JSON [{name, status, reused}] (migration 0006)
    sa.UniqueConstraint("agent", "seq", name="uq_pm_job_event_seq"),
    sa.Index("ix_pm_job_event_allocation", "allocation_id", "id"),
    sa.Index("ix_pm_job_event_request", "request_id", "error_class", "site"),
)

job_log = sa.Table(
    "pm_job_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", BigId, sa.ForeignKey("pm_job_event.id"), nullable=False, unique=True),
    sa.Column("allocation_id", BigId, nullable=False),
    sa.Column("text", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
    sa.Index("ix_pm_job_log_allocation", "allocation_id"),
)

# Automatic job sizing (migration 0008): each request's estimate on each agent, as the agent last
# pushed it (prodmanager.sizing_reports), for `prodrequest show` and the request page.
sizing = sa.Table(
    "pm_sizing",
    metadata,
    sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), primary_key=True, autoincrement=False),
    sa.Column("agent", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),  # scouting | sized | paused
    sa.Column("events_per_job", sa.BigInteger, nullable=True),
    sa.Column("memory_mb", sa.BigInteger, nullable=True),
    sa.Column("time_s", sa.BigInteger, nullable=True),
    sa.Column("figures", sa.Text, nullable=False),  # JSON {name: number}
    sa.Column("formula", sa.String(2000), nullable=False),
    sa.Column("reason", sa.String(500), nullable=True),  # why it paused
    sa.Column("computed_at", Seconds, nullable=False),  # by the agent
    sa.Column("received_at", Seconds, nullable=False),
)

agent = sa.Table(
    "pm_agent",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("sites", sa.Text, nullable=False),  # JSON list
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("token_name", sa.String(100), nullable=False),
    sa.Column("registered_at", Seconds, nullable=False),
    sa.Column("last_seen", Seconds, nullable=False),
    # its components as it last reported them (JSON list of ComponentState; migration 0004)
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("status_at", Seconds, nullable=True),
)

token = sa.Table(
    "pm_token",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Seconds, nullable=False),
    sa.Column("revoked_at", Seconds, nullable=True),
    # May submit workflows whose payload is an arbitrary `command` (migration 0002).
    sa.Column("allow_commands", sa.Boolean, nullable=False, server_default=sa.false()),
)

run = sa.Table(
    "pm_run",
    metadata,
    # An operator's decision on a run of a processing request (prodmanager.runs); migration 0003.
    sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), primary_key=True),
    sa.Column("run", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("decision", sa.String(12), nullable=False),  # accepted | dropped
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("at", Seconds, nullable=False),
)

# --- notifications (migration 0005): an outbox of events, one delivery per recipient, attempts ---

notification = sa.Table(
    "pm_notification",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", BigId, sa.ForeignKey("pm_request.id"), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),  # prodrequest.spec.NOTIFY_EVENTS
    # what caused it, unique: a repeated scan or a retried transaction adds nothing
    sa.Column("cause", sa.String(200), nullable=False, unique=True),
    sa.Column("facts", sa.Text, nullable=False),  # JSON snapshot taken in the causing transaction
    sa.Column("created_at", Seconds, nullable=False),
    sa.Column("expanded_at", Seconds, nullable=True),  # deliveries created (sender)
    sa.Index("ix_pm_notification_expand", "expanded_at", "id"),
    sa.Index("ix_pm_notification_request", "request_id", "id"),
)

delivery = sa.Table(
    "pm_delivery",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("notification_id", BigId, sa.ForeignKey("pm_notification.id"), nullable=False),
    sa.Column("channel", sa.String(10), nullable=False),  # email | webhook
    sa.Column("target", sa.String(2000), nullable=False),
    sa.Column("target_sha256", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),  # webhook-id, Message-ID
    sa.Column("content_sha256", sa.String(64), nullable=False),  # for the repeat window
    # pending -> delivered | failed (schedule used up) | gone (410) | suppressed (a repeat)
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Seconds, nullable=False),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("created_at", Seconds, nullable=False),
    sa.Column("updated_at", Seconds, nullable=False),
    sa.UniqueConstraint("notification_id", "channel", "target_sha256", name="uq_pm_delivery"),
    sa.Index("ix_pm_delivery_due", "state", "next_attempt_at"),
    sa.Index("ix_pm_delivery_repeat", "target_sha256", "content_sha256", "created_at"),
)

delivery_attempt = sa.Table(
    "pm_delivery_attempt",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", BigId, sa.ForeignKey("pm_delivery.id"), nullable=False),
    sa.Column("at", Seconds, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status or SMTP reply code
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("duration_s", Seconds, nullable=False),
    sa.Index("ix_pm_delivery_attempt_delivery", "delivery_id", "id"),
)
