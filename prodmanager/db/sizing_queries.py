"""SQL of automatic job sizing pushed by agents (`pm_sizing`): which of the named requests an agent
works on, store a push (a newer estimate replaces the stored one), read a request's estimates."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodmanager.db.schema import allocation, job_event, request, sizing
from prodmanager.models import RequestSizing


def worked_on(conn: sa.Connection, agent_name: str, request_ids: list[int]) -> set[int]:
    """The requests among these that the agent holds (or held) allocations of: the allocation
    rows name their last holder, and the job events it pushed stay when a lease went elsewhere.
    One EXISTS per request, each stopping at its first match."""
    found: set[int] = set()
    for request_id in sorted(set(request_ids)):
        held = sa.exists().where(allocation.c.request_id == request_id, allocation.c.agent == agent_name)
        reported = sa.exists().where(job_event.c.request_id == request_id, job_event.c.agent == agent_name)
        if conn.execute(sa.select(sa.or_(held, reported))).scalar():
            found.add(request_id)
    return found


def specs(conn: sa.Connection, request_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The stored workflows of these requests."""
    if not request_ids:
        return {}
    rows = conn.execute(sa.select(request.c.id, request.c.spec).where(request.c.id.in_(request_ids)))
    return {int(r.id): json.loads(r.spec) for r in rows}


def store(conn: sa.Connection, agent_name: str, sizings: list[RequestSizing], now: float) -> int:
    """Insert or replace each request's estimate on this agent, unless the stored one was
    computed later (a delayed resend changes nothing). Returns how many were stored."""
    if not sizings:
        return 0
    ids = [s.request_id for s in sizings]
    stored_at = {
        int(r.request_id): r.computed_at
        for r in conn.execute(
            sa.select(sizing.c.request_id, sizing.c.computed_at)
            .where(sizing.c.agent == agent_name, sizing.c.request_id.in_(ids))
            .with_for_update()
        )
    }
    count = 0
    for s in sizings:
        values = {
            "state": s.state, "events_per_job": s.events_per_job, "memory_mb": s.memory_mb,
            "time_s": s.time_s, "figures": json.dumps(s.figures, sort_keys=True),
            "formula": s.formula, "reason": s.reason, "computed_at": s.computed_at, "received_at": now,
        }
        if s.request_id not in stored_at:
            conn.execute(sizing.insert().values(request_id=s.request_id, agent=agent_name, **values))
        elif stored_at[s.request_id] <= s.computed_at:
            conn.execute(
                sizing.update()
                .where(sizing.c.request_id == s.request_id, sizing.c.agent == agent_name)
                .values(**values)
            )
        else:
            continue
        count += 1
    return count


def of_request(conn: sa.Connection, request_id: int) -> Sequence[sa.Row[Any]]:
    """The request's estimates, one per agent."""
    return conn.execute(
        sa.select(sizing).where(sizing.c.request_id == request_id).order_by(sizing.c.agent)
    ).all()
