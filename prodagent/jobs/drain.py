"""Draining an agent: the flag, what can be given back, and whether anything is left.

A drained agent takes no new work; allocations none of whose jobs has started (all still
`created`, first attempt, or already killed by the drain) are released unfailed to ProdManager,
which hands them out again at once; the rest run to the end, are merged and reported. The agent
is drained when it holds no lease, has no live job and no merged file left to report.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from prodagent.db.schema import pa_allocation, pa_drain, pa_file, pa_job
from prodagent.jobs import allocations, states

D, A, J = pa_drain, pa_allocation, pa_job
UNSTARTED = (states.CREATED, states.KILLED)


def set_draining(conn: sa.Connection, agent: str, reason: str) -> bool:
    """Mark the agent as draining; False if it already was."""
    if draining(conn, agent):
        return False
    conn.execute(D.insert().values(agent=agent, since=time.time(), reason=reason))
    return True


def cancel(conn: sa.Connection, agent: str) -> bool:
    return conn.execute(D.delete().where(D.c.agent == agent)).rowcount > 0


def draining(conn: sa.Connection, agent: str) -> bool:
    return conn.execute(sa.select(D.c.since).where(D.c.agent == agent)).first() is not None


def unstarted_allocations(conn: sa.Connection, agent: str) -> list[sa.Row]:
    """Held allocations none of whose jobs has reached the batch system (one grouped query)."""
    started = (sa.select(J.c.allocation_id)
               .where(J.c.allocation_id == A.c.id, sa.or_(J.c.state.not_in(UNSTARTED), J.c.retry > 0)).exists())
    return list(conn.execute(
        sa.select(A.c.id, A.c.pm_id, A.c.lease_token, A.c.state)
        .where(A.c.agent == agent, A.c.state.in_(allocations.HELD), ~started)))


def left(conn: sa.Connection, agent: str) -> dict[str, int]:
    """What still keeps a draining agent: leases held, live jobs, merged files not reported."""
    held = conn.execute(sa.select(sa.func.count()).where(A.c.agent == agent, A.c.state.in_(allocations.HELD)))
    live = conn.execute(sa.select(sa.func.count()).where(J.c.agent == agent, J.c.state.in_(sorted(states.LIVE))))
    unreported = conn.execute(
        sa.select(sa.func.count()).select_from(pa_file.join(J, J.c.id == pa_file.c.job_id))
        .where(J.c.agent == agent, pa_file.c.kind == "merged", pa_file.c.reported == sa.false(),
               pa_file.c.report_error.is_(None)))
    return {"leases": int(held.scalar_one()), "live_jobs": int(live.scalar_one()),
            "merged_unreported": int(unreported.scalar_one())}
