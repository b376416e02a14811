"""All SQL of automatic job sizing: each request's estimate, its scouts, its finished jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_allocation, pa_file, pa_job, pa_sizing
from prodagent.jobs.allocations import ACQUIRED

S, J, A = pa_sizing, pa_job, pa_allocation


def get(conn: sa.Connection, agent: str, request_id: str, lock: bool = False) -> sa.Row | None:
    query = sa.select(S).where(S.c.agent == agent, S.c.request_id == request_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def in_states(conn: sa.Connection, agent: str, sizing_states: Iterable[str]) -> list[sa.Row]:
    return list(conn.execute(sa.select(S).where(S.c.agent == agent, S.c.state.in_(sorted(set(sizing_states))))))


def all_of(conn: sa.Connection, agent: str) -> list[sa.Row]:
    return list(conn.execute(sa.select(S).where(S.c.agent == agent).order_by(S.c.request_id)))


def start(conn: sa.Connection, agent: str, request_id: str, state: str, figures: dict[str, Any],
          formula: str) -> bool:
    """The request's first estimate row (False if another process made it first)."""
    if get(conn, agent, request_id) is not None:
        return False
    conn.execute(S.insert().values(agent=agent, request_id=request_id, state=state, figures=json.dumps(figures),
                                   formula=formula, updated_at=time.time()))
    return True


def update(conn: sa.Connection, agent: str, request_id: str, figures: dict[str, Any] | None = None,
           **values: Any) -> None:
    if figures is not None:
        values["figures"] = json.dumps(figures, sort_keys=True)
    conn.execute(S.update().where(S.c.agent == agent, S.c.request_id == request_id)
                 .values(updated_at=time.time(), **values))


def scouts(conn: sa.Connection, agent: str, request_id: str) -> list[sa.Row]:
    return list(conn.execute(
        sa.select(J.c.id, J.c.state, J.c.retry, J.c.error_class, J.c.site)
        .where(J.c.agent == agent, J.c.request_id == request_id, J.c.scout == sa.true()).order_by(J.c.id)))


def finished_usage(conn: sa.Connection, agent: str, request_id: str, job_states: Iterable[str],
                   limit: int = 500) -> list[sa.Row]:
    """The latest succeeded production jobs of a request: events, wall, CPU, peak memory, output bytes."""
    out_bytes = (sa.select(sa.func.coalesce(sa.func.sum(pa_file.c.size), 0))
                 .where(pa_file.c.job_id == J.c.id, pa_file.c.kind == "unmerged").scalar_subquery())
    return list(conn.execute(
        sa.select(J.c.id, J.c.n_events, J.c.wall_s, J.c.cpu_s, J.c.max_rss_mb, J.c.scout,
                  out_bytes.label("output_bytes"))
        .where(J.c.agent == agent, J.c.request_id == request_id, J.c.job_type == "production",
               J.c.state.in_(sorted(set(job_states))), J.c.wall_s.is_not(None), J.c.n_events > 0)
        .order_by(J.c.id.desc()).limit(limit)))


def cut_so_far(conn: sa.Connection, allocation_id: str) -> tuple[int | None, int]:
    """(end of the last event range cut into jobs, number of jobs) of an allocation."""
    row = conn.execute(sa.select(sa.func.max(J.c.first_event + J.c.n_events), sa.func.count())
                       .where(J.c.allocation_id == allocation_id, J.c.job_type == "production")).one()
    return (int(row[0]) if row[0] is not None else None), int(row[1])


def waiting_allocations(conn: sa.Connection, agent: str, request_id: str) -> list[str]:
    """The request's allocations not yet (fully) cut into jobs."""
    return list(conn.execute(sa.select(A.c.id).where(A.c.agent == agent, A.c.state == ACQUIRED,
                                                     A.c.request_id == request_id)).scalars())
