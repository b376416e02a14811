"""SQL of what agents push for the monitor: job detail (`pm_job_event`, `pm_job_log`) and their
components' status (`pm_agent.status`). Store a batch of events idempotently, and read them back for the monitor (a job's events and logs, the error grid of a
request, job filters by site, error class and exit code)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodmanager.db.schema import agent, allocation, job_event, job_log
from prodmanager.models import JobEvent

OPEN = "open"
OPERATOR_STATES = ("paused", "exhausted")  # agent job states that wait for an operator


def step_progress(conn: sa.Connection, request_id: int) -> dict[str, dict[str, int]]:
    """A multi-step request's attempts per step and outcome (`ran`, `reused`, `failed`), from
    the job events its agents pushed."""
    out: dict[str, dict[str, int]] = {}
    rows = conn.execute(sa.select(job_event.c.steps).where(
        job_event.c.request_id == request_id, job_event.c.steps.is_not(None))).scalars()
    for text in rows:
        for step in json.loads(text):
            outcome = "failed" if step["status"] == "failed" else "reused" if step["reused"] else "ran"
            counts = out.setdefault(step["name"], {"ran": 0, "reused": 0, "failed": 0})
            counts[outcome] += 1
    return out


def store_events(conn: sa.Connection, agent_name: str, events: list[JobEvent]) -> int:
    """Store the events not stored yet; those of allocations this agent does not (or no longer)
    hold are skipped. The allocation's job state follows its latest event. Returns how many
    were stored."""
    if not events:
        return 0
    seqs = [e.seq for e in events]
    known = set(
        conn.execute(
            sa.select(job_event.c.seq).where(job_event.c.agent == agent_name, job_event.c.seq.in_(seqs))
        ).scalars()
    )
    ids = sorted({e.allocation_id for e in events})
    owners = {
        int(r.id): (int(r.request_id), r.state)
        for r in conn.execute(
            sa.select(allocation.c.id, allocation.c.request_id, allocation.c.state).where(
                allocation.c.id.in_(ids), allocation.c.agent == agent_name
            )
        )
    }
    stored = 0
    latest: dict[int, JobEvent] = {}
    for e in sorted(events, key=lambda e: e.seq):
        if e.seq in known or e.allocation_id not in owners:
            continue
        known.add(e.seq)
        resources = {k: getattr(e, k) for k in ("memory_mb", "wall_s", "cpu_s", "max_rss_mb")}
        result = conn.execute(
            job_event.insert().values(
                agent=agent_name, seq=e.seq, allocation_id=e.allocation_id,
                request_id=owners[e.allocation_id][0], job_name=e.job_name, retry=e.retry,
                from_state=e.from_state, to_state=e.to_state, at=e.at, reason=e.reason,
                site=e.site, exit_code=e.exit_code, error_class=e.error_class,
                resources=json.dumps({k: v for k, v in resources.items() if v is not None}),
                steps=json.dumps([s.model_dump() for s in e.steps]) if e.steps else None,
            )
        )
        if e.log_tail:
            conn.execute(
                job_log.insert().values(
                    event_id=int(result.inserted_primary_key[0]),
                    allocation_id=e.allocation_id,
                    text="\n".join(e.log_tail),
                )
            )
        latest[e.allocation_id] = e
        stored += 1
    for allocation_id, e in latest.items():
        moved_on = {} if e.to_state in OPERATOR_STATES else {"resubmit_at": None}
        conn.execute(
            allocation.update()
            .where(allocation.c.id == allocation_id, allocation.c.state == OPEN)
            .values(job_state=e.to_state, **moved_on)
        )
    return stored


def store_status(conn: sa.Connection, agent_name: str, status_json: str, now: float) -> None:
    conn.execute(
        agent.update().where(agent.c.name == agent_name).values(status=status_json, status_at=now)
    )


def last_seq(conn: sa.Connection, agent_name: str) -> int:
    found = conn.execute(
        sa.select(sa.func.max(job_event.c.seq)).where(job_event.c.agent == agent_name)
    ).scalar()
    return int(found or 0)


def events_of(conn: sa.Connection, allocation_id: int, limit: int = 500) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(job_event)
        .where(job_event.c.allocation_id == allocation_id)
        .order_by(job_event.c.at, job_event.c.seq)
        .limit(limit)
    ).all()


def logs_of(conn: sa.Connection, allocation_id: int, limit: int = 20) -> Sequence[sa.Row[Any]]:
    """The log tails of a job's failed attempts, newest first."""
    return conn.execute(
        sa.select(job_event.c.retry, job_event.c.to_state, job_event.c.at, job_event.c.job_name,
                  job_log.c.text)
        .join(job_event, job_event.c.id == job_log.c.event_id)
        .where(job_log.c.allocation_id == allocation_id)
        .order_by(job_log.c.id.desc())
        .limit(limit)
    ).all()


def error_grid(conn: sa.Connection, request_id: int) -> Sequence[sa.Row[Any]]:
    """Failed attempts of a request by error class and site (events that carry a class)."""
    return conn.execute(
        sa.select(
            job_event.c.error_class,
            sa.func.coalesce(job_event.c.site, "").label("site"),
            sa.func.count().label("n"),
        )
        .where(job_event.c.request_id == request_id, job_event.c.error_class.is_not(None))
        .group_by(job_event.c.error_class, sa.text("2"))
    ).all()


def waiting(
    conn: sa.Connection, request_id: int, job_states: list[str], now: float
) -> Sequence[sa.Row[Any]]:
    """Held allocations of a request whose job is in one of `job_states`, each with its latest
    event (class, time, reason)."""
    later = job_event.alias("later")
    latest = (
        sa.select(sa.func.max(later.c.id))
        .where(later.c.allocation_id == allocation.c.id)
        .correlate(allocation)
        .scalar_subquery()
    )
    return conn.execute(
        sa.select(allocation.c.id, job_event.c.error_class, job_event.c.at, job_event.c.reason)
        .select_from(allocation.join(job_event, job_event.c.id == latest))
        .where(
            allocation.c.request_id == request_id,
            allocation.c.state == OPEN,
            allocation.c.lease_expires >= now,
            allocation.c.job_state.in_(job_states),
        )
        .limit(10_000)
    ).all()


def mark_resubmit(conn: sa.Connection, allocation_ids: list[int], now: float) -> int:
    if not allocation_ids:
        return 0
    return conn.execute(
        allocation.update().where(allocation.c.id.in_(allocation_ids)).values(resubmit_at=now)
    ).rowcount


def resubmits_for(conn: sa.Connection, agent_name: str, now: float) -> list[int]:
    """Allocations this agent holds whose job waits for an operator who asked to resubmit it."""
    return [
        int(i)
        for i in conn.execute(
            sa.select(allocation.c.id).where(
                allocation.c.agent == agent_name,
                allocation.c.state == OPEN,
                allocation.c.lease_expires >= now,
                allocation.c.resubmit_at.is_not(None),
                allocation.c.job_state.in_(OPERATOR_STATES),
            ).limit(1000)
        ).scalars()
    ]


def allocations_matching(
    site: str | None, error_class: str | None, exit_code: int | None
) -> sa.ColumnElement[bool] | None:
    """A condition on `pm_allocation` rows: some event of theirs has this site, class, code."""
    where = []
    if site:
        where.append(job_event.c.site == site)
    if error_class:
        where.append(job_event.c.error_class == error_class)
    if exit_code is not None:
        where.append(job_event.c.exit_code == exit_code)
    if not where:
        return None
    # EXISTS, not IN: a page walking allocations newest first stops after its rows
    return sa.exists().where(job_event.c.allocation_id == allocation.c.id, *where)
