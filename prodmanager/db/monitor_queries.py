"""The web monitor's reads (all its SQL): pages of requests and allocations, per-request time
series and per-agent load. Read-only; every query is
bounded (LIMIT, or GROUP BY over indexed columns), so a page costs the same with 100,000 jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from prodmanager.db.schema import allocation, file, request

OPEN = "open"


def request_page(
    conn: sa.Connection,
    states: list[str] | None,
    owner: str | None,
    name_like: str | None,
    offset: int,
    limit: int,
) -> tuple[int, Sequence[sa.Row[Any]]]:
    """One page of requests (newest first) and how many match in all."""
    cols = [c for c in request.c if c.name != "spec"]
    where: list[sa.ColumnElement[bool]] = []
    if states:
        where.append(request.c.state.in_(states))
    if owner is not None:
        where.append(request.c.owner == owner)
    if name_like:
        where.append(request.c.name.contains(name_like, autoescape=True))
    total = conn.execute(sa.select(sa.func.count()).select_from(request).where(*where)).scalar_one()
    rows = conn.execute(
        sa.select(*cols).where(*where).order_by(request.c.id.desc()).offset(offset).limit(limit)
    ).all()
    return int(total), rows


def activity(conn: sa.Connection, request_ids: list[int]) -> dict[int, tuple[float, float]]:
    """Per request: (the last change of any allocation: a pull, report or finish; the last
    allocation finished done). 0 when never. Read from an index alone."""
    if not request_ids:
        return {}
    rows = conn.execute(
        sa.select(allocation.c.request_id, allocation.c.state,
                  sa.func.max(allocation.c.updated_at).label("at"))
        .where(allocation.c.request_id.in_(request_ids))
        .group_by(allocation.c.request_id, allocation.c.state)
    ).all()
    out: dict[int, tuple[float, float]] = {}
    for r in rows:
        last, done = out.get(int(r.request_id), (0.0, 0.0))
        at = float(r.at or 0)
        out[int(r.request_id)] = (max(last, at), max(done, at) if r.state == "done" else done)
    return out


def finished_series(conn: sa.Connection, request_id: int, buckets: int = 60) -> Sequence[sa.Row[Any]]:
    """Finished allocations of a request per time bucket and state: (bucket start, state,
    count, events). At most `buckets` buckets between the first and the last finish."""
    span = conn.execute(
        sa.select(sa.func.min(allocation.c.updated_at), sa.func.max(allocation.c.updated_at)).where(
            allocation.c.request_id == request_id, allocation.c.state != OPEN
        )
    ).first()
    if span is None or span[0] is None:
        return []
    first, last = float(span[0]), float(span[1])
    width = max((last - first) / buckets, 1.0)
    bucket = sa.cast((allocation.c.updated_at - first) / width, sa.Integer).label("b")
    rows = conn.execute(
        sa.select(
            bucket,
            allocation.c.state,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(allocation.c.events_done), 0).label("events"),
        )
        .where(allocation.c.request_id == request_id, allocation.c.state != OPEN)
        .group_by(bucket, allocation.c.state)
        .order_by(bucket)
    ).all()
    return [(first + int(r.b) * width, r.state, int(r.n), int(r.events)) for r in rows]  # type: ignore[return-value]


def outcomes_by_agent(conn: sa.Connection, since: float, now: float) -> Sequence[sa.Row[Any]]:
    """Per agent since `since`: done and failed allocations; and what it holds now, by the job
    state it last reported."""
    finished = conn.execute(
        sa.select(allocation.c.agent, allocation.c.state, sa.func.count().label("n"))
        .where(
            allocation.c.state.in_(["done", "failed"]),
            allocation.c.updated_at >= since,
            allocation.c.agent.is_not(None),
        )
        .group_by(allocation.c.agent, allocation.c.state)
    ).all()
    held = conn.execute(
        sa.select(
            allocation.c.agent,
            sa.func.coalesce(allocation.c.job_state, "leased").label("state"),
            sa.func.count().label("n"),
        )
        .where(allocation.c.state == OPEN, allocation.c.lease_expires >= now)
        .group_by(allocation.c.agent, sa.text("2"))
    ).all()
    return [*finished, *held]


def allocation_page(
    conn: sa.Connection,
    request_id: int | None,
    owner: str | None,
    states: list[str] | None,
    agent_name: str | None,
    job_state: str | None,
    reason_like: str | None,
    matching: sa.ColumnElement[bool] | None,
    offset: int,
    limit: int,
) -> list[Any]:
    """A page of allocations (jobs) by filter, newest first; `owner`: of that owner's requests
    only. Walked down the primary key (no join, filters as semi-joins) so that a page stops
    after `limit` matches, on MariaDB as on SQLite; request names are read for the page."""
    where: list[sa.ColumnElement[bool]] = []
    if request_id is not None:
        where.append(allocation.c.request_id == request_id)
    if owner is not None:
        where.append(
            allocation.c.request_id.in_(sa.select(request.c.id).where(request.c.owner == owner))
        )
    if states:
        where.append(allocation.c.state.in_(states))
    if agent_name:
        where.append(allocation.c.agent == agent_name)
    if job_state:
        where.append(allocation.c.job_state == job_state)
    if reason_like:
        where.append(allocation.c.reason.contains(reason_like, autoescape=True))
    if matching is not None:
        where.append(matching)
    rows = conn.execute(
        sa.select(allocation).where(*where).order_by(allocation.c.id.desc()).offset(offset).limit(limit)
    ).all()
    ids = sorted({int(r.request_id) for r in rows})
    names = {
        int(r.id): (r.name, r.owner)
        for r in conn.execute(
            sa.select(request.c.id, request.c.name, request.c.owner).where(request.c.id.in_(ids))
        )
    }
    return [
        SimpleNamespace(**r._mapping, request_name=names[int(r.request_id)][0],
                        owner=names[int(r.request_id)][1])
        for r in rows
    ]


def allocation_with_request(conn: sa.Connection, allocation_id: int) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(allocation, request.c.name.label("request_name"), request.c.owner)
        .join(request, request.c.id == allocation.c.request_id)
        .where(allocation.c.id == allocation_id)
    ).first()


def files_of(
    conn: sa.Connection, request_id: int | None, allocation_id: int | None, limit: int
) -> Sequence[sa.Row[Any]]:
    query = sa.select(
        file.c.lfn, file.c.kind, file.c.state, file.c.size, file.c.checksum, file.c.events,
        file.c.agent, file.c.allocation_id,
    )
    if request_id is not None:
        query = query.where(file.c.request_id == request_id)
    if allocation_id is not None:
        query = query.where(file.c.allocation_id == allocation_id)
    return conn.execute(query.order_by(file.c.id.desc()).limit(limit)).all()
