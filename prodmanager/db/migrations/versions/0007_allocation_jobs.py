"""Jobs per allocation: `pm_allocation.n_jobs`, how many jobs an allocation holds (several for a
request of more than MAX_ALLOCATIONS jobs, or for `per_job: auto`), so that acquire, the agents'
capacity and fair shares count jobs rather than allocation rows.

Existing rows: 1 by default; Monte Carlo rows holding more events than one job get
ceil(n_events / events per job), events per job read from their request's stored spec (for auto,
the guessed job length, as the splitter does). A spec that cannot be read leaves its rows at 1.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
import math
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pm_allocation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("n_jobs", sa.Integer, nullable=False, server_default="1"))
    conn = op.get_bind()
    request = sa.table("pm_request", sa.column("id", sa.BigInteger), sa.column("kind", sa.String),
                       sa.column("spec", sa.Text))
    allocation = sa.table("pm_allocation", sa.column("request_id", sa.BigInteger),
                          sa.column("n_events", sa.BigInteger), sa.column("n_jobs", sa.Integer))
    for request_id, spec in conn.execute(sa.select(request.c.id, request.c.spec).where(request.c.kind == "montecarlo")):
        per_job = _job_events(spec)
        if per_job is None or per_job <= 1:
            continue
        # ceil(n_events / per_job), in integers on both SQLite and MariaDB (floor division of a multiple)
        up = allocation.c.n_events + (per_job - 1)
        conn.execute(
            allocation.update()
            .where(allocation.c.request_id == request_id, allocation.c.n_events > per_job)
            .values(n_jobs=(up - up % per_job) // per_job)
        )


def _job_events(spec: str) -> int | None:
    """Events per job of a stored Monte Carlo spec (auto: the guessed length); None if unreadable."""
    try:
        events: dict[str, Any] = json.loads(spec)["events"]
        per_job = events["per_job"]
        if per_job == "auto":
            return max(1, math.floor(float(events["target_job_s"]) / float(events["time_per_event_s"])))
        return int(per_job)
    except (ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def downgrade() -> None:
    with op.batch_alter_table("pm_allocation", schema=None) as batch_op:
        batch_op.drop_column("n_jobs")
