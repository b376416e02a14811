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

# -- work: allocations, jobs, files, datasets --------------------------------------------------

JsonText = LongText

pa_allocation = sa.Table(
    "pa_allocation",
    metadata,
    # One lease of a ProdManager allocation: "{pm_id}.{lease_epoch}" (prodagent.jobs.allocations)
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("request_name", sa.String(200), nullable=False),
    sa.Column("lease_token", sa.String(100), nullable=False),
    sa.Column("lease_expires_at", Time, nullable=False),
    sa.Column("workflow", JsonText, nullable=False),  # the request's workflow spec (JSON)
    sa.Column("first_event", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("n_events", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("run", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("seed", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("job_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("input_files", JsonText, nullable=True),
    sa.Column("state", sa.String(20), nullable=False),  # table in prodagent.jobs.allocations
    sa.Column("events_reported", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reason", sa.Text, nullable=True),  # why it was given up (unrunnable, failed, lost)
    sa.Column("acquired_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("pm_id", sa.BigInteger, nullable=False, server_default="0"),  # ProdManager's allocation id
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),  # ProdManager's lease count
    # jobs it holds, as ProdManager says (per_job auto: a guess); migration 0011
    sa.Column("n_jobs", sa.Integer, nullable=False, server_default="1"),
    sa.Index("ix_pa_allocation_state", "agent", "state"),
    sa.Index("ix_pa_allocation_leases", "agent", "state", "lease_expires_at"),  # metrics
    sa.Index("ix_pa_allocation_pm", "agent", "pm_id"),
)

pa_job = sa.Table(
    "pa_job",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("job_type", sa.String(20), nullable=False),  # production | merge
    sa.Column("allocation_id", sa.String(64), nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("dataset_id", sa.Integer, nullable=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("retry", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_retries", sa.Integer, nullable=False, server_default="3"),
    sa.Column("first_event", sa.BigInteger, nullable=True),
    sa.Column("n_events", sa.BigInteger, nullable=True),
    sa.Column("seed", sa.BigInteger, nullable=True),
    sa.Column("job_index", sa.Integer, nullable=True),
    sa.Column("run", sa.BigInteger, nullable=True),
    sa.Column("site", Name, nullable=True),
    sa.Column("memory_mb", sa.Integer, nullable=False, server_default="2000"),
    sa.Column("time_s", sa.Integer, nullable=False, server_default="3600"),
    sa.Column("workdir", sa.String(500), nullable=False),
    sa.Column("batch_id", sa.String(100), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("error_code", sa.Integer, nullable=True),
    sa.Column("error_class", Name, nullable=True),
    sa.Column("error_reason", sa.Text, nullable=True),
    sa.Column("events_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("wall_s", sa.Double(), nullable=True),
    sa.Column("cpu_s", sa.Double(), nullable=True),
    sa.Column("max_rss_mb", sa.Double(), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # killed, its batch job still to be removed by JobSubmitter (set with the kill, cleared after)
    sa.Column("kill_pending_at", Time, nullable=True),
    sa.Column("node", Name, nullable=True),  # the node it ran on, when the batch system says
    sa.Column("scout", sa.Boolean, nullable=False, server_default=sa.false()),  # per_job auto: a scout job
    sa.Index("ix_pa_job_state", "agent", "state"),
    sa.Index("ix_pa_job_allocation", "allocation_id"),
    sa.Index("ix_pa_job_request", "request_id", "state"),
    sa.Index("ix_pa_job_kill_pending", "agent", "kill_pending_at"),
    sa.Index("ix_pa_job_metrics", "agent", "state", "site", "job_type"),  # metrics: index-only
)

pa_job_transition = sa.Table(
    "pa_job_transition",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("from_state", sa.String(20), nullable=True),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("retry", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_pa_job_transition_job", "job_id", "id"),
)

pa_dataset = sa.Table(
    "pa_dataset",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("tier", Name, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("merge_policy", JsonText, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("agent", "name", name="uq_pa_dataset_name"),
)

pa_file = sa.Table(
    "pa_file",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("lfn", sa.String(500), nullable=False, unique=True),
    sa.Column("pfn", sa.String(500), nullable=False),
    sa.Column("dataset_id", sa.Integer, nullable=False),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # unmerged | merged
    # unmerged: new -> merging -> merged -> cleaned ; merged: final
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("adler32", sa.String(8), nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("first_event", sa.BigInteger, nullable=True),
    sa.Column("run", sa.BigInteger, nullable=True),
    sa.Column("merge_job_id", sa.Integer, nullable=True),
    sa.Column("reported", sa.Boolean, nullable=False, server_default=sa.false()),
    # merged files: why ProdManager refused the report (then `reported` stays false, for good)
    sa.Column("report_error", sa.Text, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_pa_file_dataset_state", "dataset_id", "kind", "state"),
    sa.Index("ix_pa_file_merge_job", "merge_job_id"),
    sa.Index("ix_pa_file_job", "job_id", "state"),
    sa.Index("ix_pa_file_state", "state"),
)

pa_file_parent = sa.Table(
    "pa_file_parent",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True),  # the merged file
    sa.Column("parent_id", sa.Integer, primary_key=True),  # an unmerged input
)

pa_file_input = sa.Table(
    "pa_file_input",
    metadata,
    # parentage across tasks (migration 0010): the files, by LFN, read by the job that produced
    # an unmerged file (they may be another request's merged files, or outside this catalog)
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("lfn", sa.String(500), primary_key=True),
)

pa_site = sa.Table(
    "pa_site",
    metadata,
    sa.Column("agent", Name, primary_key=True),
    sa.Column("site", Name, primary_key=True),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("running", sa.Integer, nullable=False),
    sa.Column("queued", sa.Integer, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

pa_run = sa.Table(
    "pa_run",
    metadata,
    # ProdManager's state of a run of a processing request merged per run (migration 0006):
    # MergeSensor merges the run's outputs only while it is `ready`.
    sa.Column("agent", Name, primary_key=True),
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("run", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# -- replicas: where each file's bytes are (work area, storage elements, archive) -----------------

pa_replica = sa.Table(
    "pa_replica",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("file_id", sa.Integer, nullable=False),
    sa.Column("element", Name, nullable=False),  # a configured storage element, or "workarea"
    sa.Column("pfn", sa.String(600), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),  # unmerged | merged | archive
    sa.Column("state", sa.String(20), nullable=False),  # table in prodagent.storage.replica_states
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("adler32", sa.String(8), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("file_id", "element", name="uq_pa_replica_file_element"),
    sa.Index("ix_pa_replica_state", "state", "role"),
)

# -- site health: circuit breakers (prodagent.jobs.site_states) and black-hole nodes -----------

pa_site_health = sa.Table(
    "pa_site_health",
    metadata,
    sa.Column("agent", Name, primary_key=True),
    sa.Column("site", Name, primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),  # table in prodagent.jobs.site_states
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("since", Time, nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),  # by an operator
)

pa_site_event = sa.Table(
    "pa_site_event",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("site", Name, nullable=False),
    sa.Column("node", Name, nullable=True),  # set for a node exclusion
    sa.Column("from_state", sa.String(20), nullable=True),
    sa.Column("to_state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("figures", JsonText, nullable=False),  # the numbers behind the decision (JSON)
    sa.Column("at", Time, nullable=False),
    sa.Index("ix_pa_site_event_site", "agent", "site", "id"),
)

# One row per ended attempt: what site health and placement learn from (purged after a window).
pa_site_result = sa.Table(
    "pa_site_result",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("agent", Name, nullable=False),
    sa.Column("site", Name, nullable=False),
    sa.Column("node", Name, nullable=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("site_fault", sa.Boolean, nullable=False),  # lost, node failure, stage-out: the site's
    sa.Column("wall_s", sa.Double(), nullable=True),
    # covering: tallies and black holes are read per site from the index alone
    sa.Index("ix_pa_site_result_tally", "agent", "site", "at", "ok", "site_fault", "node", "wall_s"),
)

pa_node_exclusion = sa.Table(
    "pa_node_exclusion",
    metadata,
    sa.Column("agent", Name, primary_key=True),
    sa.Column("site", Name, primary_key=True),
    sa.Column("node", Name, primary_key=True),
    sa.Column("until", Time, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# per_job auto: each request's job-size estimate on this agent (prodagent.jobs.sizing)
pa_sizing = sa.Table(
    "pa_sizing",
    metadata,
    sa.Column("agent", Name, primary_key=True),
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),  # scouting | sized | paused
    sa.Column("events_per_job", sa.BigInteger, nullable=True),
    sa.Column("memory_mb", sa.Integer, nullable=True),
    sa.Column("time_s", sa.Integer, nullable=True),
    sa.Column("figures", JsonText, nullable=False),  # the measurements behind the estimate (JSON)
    sa.Column("formula", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),  # why it paused
    sa.Column("updated_at", Time, nullable=False),
)

# An agent being drained (`prodAgentd drain`): it takes no new work and gives back what has not started.
pa_drain = sa.Table(
    "pa_drain",
    metadata,
    sa.Column("agent", Name, primary_key=True),
    sa.Column("since", Time, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)
