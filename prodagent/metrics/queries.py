"""The SQL behind the agent's metrics: grouped counts over the agent's tables, one statement per
metric family, all served by the indexes that lead with `agent`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import (
    ms_dead_letter,
    ms_message,
    ms_process,
    pa_allocation,
    pa_job,
    pa_job_transition,
    pa_site,
)
from prodagent.jobs.allocations import HELD
from prodagent.jobs.states import FAILED, JOBFAILED, SUCCESS

ENDED = frozenset({SUCCESS, JOBFAILED})  # an attempt that ran and ended: its wall time is known


def jobs_by_state(conn: sa.Connection, agent: str) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(pa_job.c.state, pa_job.c.site, pa_job.c.job_type, sa.func.count().label("n"))
        .where(pa_job.c.agent == agent)
        .group_by(pa_job.c.state, pa_job.c.site, pa_job.c.job_type)
    ).all()


def allocations_by_state(conn: sa.Connection, agent: str, now: float) -> Sequence[sa.Row[Any]]:
    """Per state: allocations, and how many of them hold a running lease (one scan for both)."""
    leased = sa.case(
        (sa.and_(pa_allocation.c.state.in_(list(HELD)), pa_allocation.c.lease_expires_at > now), 1),
        else_=0,
    )
    return conn.execute(
        sa.select(
            pa_allocation.c.state, sa.func.count().label("n"), sa.func.sum(leased).label("leased")
        )
        .where(pa_allocation.c.agent == agent)
        .group_by(pa_allocation.c.state)
    ).all()


def messages_pending(conn: sa.Connection, agent: str) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(
            ms_message.c.component,
            sa.func.count().label("n"),
            sa.func.min(ms_message.c.created_at).label("oldest"),
        )
        .where(ms_message.c.agent == agent)
        .group_by(ms_message.c.component)
    ).all()


def dead_letters(conn: sa.Connection, agent: str) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(ms_dead_letter.c.component, sa.func.count().label("n"))
        .where(ms_dead_letter.c.agent == agent)
        .group_by(ms_dead_letter.c.component)
    ).all()


def processes(conn: sa.Connection, agent: str) -> Sequence[sa.Row[Any]]:
    """Per component: messages handled by all its processes ever, and its newest live heartbeat."""
    live_beat = sa.case((ms_process.c.stopped_at.is_(None), ms_process.c.heartbeat_at), else_=None)
    return conn.execute(
        sa.select(
            ms_process.c.component,
            sa.func.sum(ms_process.c.handled).label("handled"),
            sa.func.max(live_beat).label("heartbeat_at"),
        )
        .where(ms_process.c.agent == agent)
        .group_by(ms_process.c.component)
    ).all()


def sites(conn: sa.Connection, agent: str) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(pa_site.c.site, pa_site.c.slots, pa_site.c.running, pa_site.c.queued).where(
            pa_site.c.agent == agent
        )
    ).all()


def transitions_since(
    conn: sa.Connection, agent: str, after_id: int
) -> tuple[Sequence[sa.Row[Any]], int]:
    """Job transitions with ids in (`after_id`, newest], counted by (from, to); attempts that
    ended (success or failure) also by the job's site, failures also by error class; and that
    newest id. Counting from where the last
    scrape stopped keeps a scrape cheap however long the table grows."""
    newest = conn.execute(sa.select(sa.func.max(pa_job_transition.c.id))).scalar_one()
    if newest is None or newest <= after_id:
        return [], after_id
    t, j = pa_job_transition, pa_job
    is_failure = t.c.to_state.in_(sorted(FAILED))
    ended = t.c.to_state.in_(sorted(FAILED | {SUCCESS}))
    site = sa.case((ended, j.c.site), else_=None).label("site")
    error_class = sa.case((is_failure, j.c.error_class), else_=None).label("error_class")
    rows = conn.execute(
        sa.select(t.c.from_state, t.c.to_state, site, error_class, sa.func.count().label("n"))
        .join(j, j.c.id == t.c.job_id)
        .where(t.c.id > after_id, t.c.id <= newest, j.c.agent == agent)
        .group_by(t.c.from_state, t.c.to_state, site, error_class)
    ).all()
    return rows, int(newest)


def wall_times(
    conn: sa.Connection, agent: str, after_id: int, upto_id: int
) -> Sequence[float]:
    """Wall times of job attempts that ended (success or a failure after running) with
    transitions in (`after_id`, `upto_id`]."""
    t, j = pa_job_transition, pa_job
    rows = conn.execute(
        sa.select(j.c.wall_s)
        .join(j, j.c.id == t.c.job_id)
        .where(
            t.c.id > after_id,
            t.c.id <= upto_id,
            t.c.to_state.in_(sorted(ENDED)),
            j.c.agent == agent,
            j.c.wall_s.is_not(None),
        )
    ).all()
    return [float(r.wall_s) for r in rows]
