"""The agent's allocations: their state table and all their SQL, in one place.

An agent-side allocation row is one lease of one ProdManager allocation: its key is
`{pm_id}.{lease_epoch}` (unique with the agent too), so a lease lost and the same allocation
leased again (to this agent or to another agent on the same database) is a new row with its own
jobs, never the old row brought back. Jobs point at the row (`pa_job.allocation_id`).

States (every change goes through `move`, which applies the table and leaves rows already past
the change alone, so a repeated step changes nothing):

    acquired    recorded after the acquire call; no jobs yet
    active      cut into jobs
    unrunnable  its jobs could not be built (JobCreator; `reason` says why); to release as failed
    unsupported a kind of work this agent cannot run (JobCreator); to release as failed
    done        completed with ProdManager (events and files acknowledged)        - final
    failed      released to ProdManager as failed (jobs exhausted, or unrunnable) - final
    lost        the lease expired or went to another agent; its outputs are void   - final
    recalled    its request was aborted                                           - final
    released    given back unfailed                                               - final
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_allocation, pa_dataset, pa_file, pa_job
from prodagent.errors import IllegalTransition
from prodagent.jobs import states

A = pa_allocation

ACQUIRED, ACTIVE, UNRUNNABLE, UNSUPPORTED = "acquired", "active", "unrunnable", "unsupported"
DONE, FAILED, LOST, RECALLED, RELEASED = "done", "failed", "lost", "recalled", "released"

ALLOCATION_TRANSITIONS: dict[str, frozenset[str]] = {
    ACQUIRED: frozenset({ACTIVE, UNRUNNABLE, UNSUPPORTED, LOST, RECALLED, RELEASED}),
    ACTIVE: frozenset({DONE, FAILED, LOST, RECALLED, RELEASED}),
    UNRUNNABLE: frozenset({FAILED, LOST, RECALLED}),
    UNSUPPORTED: frozenset({FAILED, LOST, RECALLED}),
    DONE: frozenset(),
    FAILED: frozenset(),
    LOST: frozenset(),
    RECALLED: frozenset(),
    RELEASED: frozenset(),
}
STATES = frozenset(ALLOCATION_TRANSITIONS)
HELD = (ACQUIRED, ACTIVE)  # leases renewed with ProdManager
TO_GIVE_UP = (UNRUNNABLE, UNSUPPORTED)  # released to ProdManager as failed, with their reason
FINAL = frozenset(s for s, nxt in ALLOCATION_TRANSITIONS.items() if not nxt)
OUTPUTS_VOID = FINAL - {DONE}  # ended without a completion: their outputs are never merged


def allowed_from(to_state: str) -> frozenset[str]:
    """The states from which `to_state` may be reached."""
    if to_state not in STATES:
        raise IllegalTransition(f"unknown allocation state {to_state!r}")
    return frozenset(s for s, nxt in ALLOCATION_TRANSITIONS.items() if to_state in nxt)


def key(pm_id: int, lease_epoch: int) -> str:
    """The agent-side id of one lease of a ProdManager allocation."""
    return f"{pm_id}.{lease_epoch}"


# -- reads ----------------------------------------------------------------------------------------

def allocation(conn: sa.Connection, allocation_id: str, lock: bool = False) -> sa.Row | None:
    query = sa.select(A).where(A.c.id == allocation_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def allocations(conn: sa.Connection, allocation_ids: Iterable[str], lock: bool = False) -> list[sa.Row]:
    """Many allocations at once, in id order (so concurrent lockers cannot deadlock)."""
    ids = sorted(set(allocation_ids))
    if not ids:
        return []
    query = sa.select(A).where(A.c.id.in_(ids)).order_by(A.c.id)
    return list(conn.execute(query.with_for_update() if lock else query))


# What renewing and completing leases needs of an allocation (not its workflow document).
LEASE_COLUMNS = tuple(A.c[n] for n in (
    "id", "pm_id", "lease_epoch", "state", "lease_token", "lease_expires_at", "acquired_at", "reason",
))


def allocations_in(conn: sa.Connection, agent: str, alloc_states: Iterable[str]) -> list[sa.Row]:
    """The agent's allocations in these states, oldest first: their lease columns only."""
    return list(conn.execute(
        sa.select(*LEASE_COLUMNS).where(A.c.agent == agent, A.c.state.in_(list(alloc_states)))
        .order_by(A.c.acquired_at, A.c.id)
    ))


def known_leases(conn: sa.Connection, ids: Sequence[str]) -> dict[str, str]:
    """{id: agent} of the rows already recorded among `ids`."""
    if not ids:
        return {}
    return dict(conn.execute(sa.select(A.c.id, A.c.agent).where(A.c.id.in_(sorted(ids)))).all())


def workflow_of(row: sa.Row) -> dict[str, Any]:
    return json.loads(row.workflow)


def workflow_for_request(conn: sa.Connection, request_id: str) -> dict[str, Any] | None:
    text = conn.execute(sa.select(A.c.workflow).where(A.c.request_id == request_id).limit(1)).scalar()
    return json.loads(text) if text else None


def waiting_for_jobs(conn: sa.Connection, agent: str, request_id: str) -> bool:
    """True while an allocation of the request is held but not yet settled with ProdManager."""
    return conn.execute(
        sa.select(A.c.id).where(A.c.agent == agent, A.c.request_id == request_id,
                                A.c.state.in_([ACQUIRED, ACTIVE])).limit(1)
    ).first() is not None


def jobs_waiting(conn: sa.Connection, agent: str) -> int:
    """Production jobs the agent holds but has not finished, in one query: its live jobs plus
    the jobs of allocations still `acquired` not yet cut (their `n_jobs` less the jobs already
    cut from them: per_job auto cuts in steps). Read from `ix_pa_job_metrics`,
    `ix_pa_allocation_state` and `ix_pa_job_allocation`."""
    J = pa_job
    cut = sa.select(sa.func.count()).where(J.c.allocation_id == A.c.id).correlate(A).scalar_subquery()
    uncut = sa.select(sa.func.coalesce(sa.func.sum(sa.case((A.c.n_jobs > cut, A.c.n_jobs - cut), else_=0)), 0)
                      ).where(A.c.agent == agent, A.c.state == ACQUIRED).scalar_subquery()
    live = sa.select(sa.func.count()).where(
        J.c.agent == agent, J.c.state.in_(sorted(states.LIVE)), J.c.job_type == "production"
    ).scalar_subquery()
    return int(conn.execute(sa.select(live + uncut)).scalar_one())


def job_summary(conn: sa.Connection, agent: str, done_ok: Iterable[str], ended: Iterable[str],
                only: Sequence[str] | None = None) -> list[sa.Row]:
    """Per active allocation of this agent: (allocation_id, jobs, jobs done, jobs ended, events done)."""
    J = pa_job
    query = (
        sa.select(
            J.c.allocation_id, sa.func.count(),
            sa.func.sum(sa.case((J.c.state.in_(list(done_ok)), 1), else_=0)),
            sa.func.sum(sa.case((J.c.state.in_(list(ended)), 1), else_=0)),
            sa.func.sum(J.c.events_done),
        )
        .select_from(J.join(A, A.c.id == J.c.allocation_id))
        .where(A.c.agent == agent, A.c.state == ACTIVE)
        .group_by(J.c.allocation_id)
    )
    if only is not None:
        query = query.where(J.c.allocation_id.in_(list(only)))
    return list(conn.execute(query))


def jobs_of(conn: sa.Connection, allocation_id: str) -> list[sa.Row]:
    return list(conn.execute(sa.select(pa_job).where(pa_job.c.allocation_id == allocation_id).order_by(pa_job.c.id)))


def unmerged_outputs(conn: sa.Connection, allocation_ids: Sequence[str]) -> list[sa.Row]:
    """(allocation_id, file columns) of the unmerged files the allocations' jobs produced."""
    if not allocation_ids:
        return []
    return list(conn.execute(
        sa.select(pa_job.c.allocation_id, pa_file)
        .select_from(pa_file.join(pa_job, pa_job.c.id == pa_file.c.job_id))
        .where(pa_job.c.allocation_id.in_(list(allocation_ids)), pa_file.c.kind == "unmerged")
        .order_by(pa_file.c.id)
    ))


def settled_output() -> sa.ColumnElement[bool]:
    """A condition on `pa_file` (correlated): its production job's allocation is `done`.

    Only such files may be merged: ProdManager takes a merged file only when all its inputs come
    from done allocations, under the lease that produced them; a done allocation can no longer
    be lost, so a merge never includes the outputs of a lost (or still uncertain) lease.
    """
    return sa.exists(
        sa.select(1).select_from(pa_job.join(A, A.c.id == pa_job.c.allocation_id))
        .where(pa_job.c.id == pa_file.c.job_id, A.c.state == DONE)
    )


def jobs_of_void_allocations(agent: str) -> sa.Select:
    """The ids of the agent's production jobs no longer live whose allocation ended without being
    completed with ProdManager (`OUTPUTS_VOID`): their outputs are never merged. Read by index
    (allocations by agent and state, jobs by allocation)."""
    return (sa.select(pa_job.c.id).select_from(A.join(pa_job, pa_job.c.allocation_id == A.c.id))
            .where(A.c.agent == agent, A.c.state.in_(sorted(OUTPUTS_VOID)), pa_job.c.agent == agent,
                   pa_job.c.state.not_in(sorted(states.LIVE))))


# -- writes ---------------------------------------------------------------------------------------

def insert(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(A.insert(), list(rows))


def move(conn: sa.Connection, allocation_ids: Sequence[str], to_state: str, **fields: Any) -> list[str]:
    """Move allocations to `to_state` where the table allows it; return the ids moved.

    Rows already in `to_state`, or past it, are left alone (a repeated step changes nothing).
    """
    sources = allowed_from(to_state)
    ids = sorted(set(allocation_ids))
    if not ids:
        return []
    movable = list(conn.execute(
        sa.select(A.c.id).where(A.c.id.in_(ids), A.c.state.in_(sorted(sources))).order_by(A.c.id).with_for_update()
    ).scalars())
    if movable:
        conn.execute(A.update().where(A.c.id.in_(movable), A.c.state.in_(sorted(sources)))
                     .values(state=to_state, updated_at=time.time(), **fields))
    return movable


def set_allocations(conn: sa.Connection, allocation_ids: Sequence[str], **fields: Any) -> list[str]:
    """Set fields on many allocations in one statement; a `state` goes through the table (`move`)."""
    if "state" in fields:
        return move(conn, allocation_ids, fields.pop("state"), **fields)
    if allocation_ids:
        conn.execute(A.update().where(A.c.id.in_(list(allocation_ids))).values(updated_at=time.time(), **fields))
    return list(allocation_ids)


def set_allocation(conn: sa.Connection, allocation_id: str, **fields: Any) -> bool:
    """Set fields on one allocation; False when a `state` change is not allowed from where it is."""
    return bool(set_allocations(conn, [allocation_id], **fields))


def set_leases(conn: sa.Connection, expiries: dict[str, float]) -> None:
    """Record renewed leases: one statement per distinct expiry, not per allocation."""
    by_expiry: dict[float, list[str]] = {}
    for allocation_id, expires in expiries.items():
        by_expiry.setdefault(expires, []).append(allocation_id)
    now = time.time()
    for expires, ids in by_expiry.items():
        conn.execute(A.update().where(A.c.id.in_(ids), A.c.state.in_(list(HELD)))
                     .values(lease_expires_at=expires, updated_at=now))


# -- merged files to report to ProdManager ---------------------------------------------------------

def unreported_merged(conn: sa.Connection, agent: str, limit: int = 100) -> list[sa.Row]:
    """Merged files of this agent not yet reported (nor refused), oldest first, with their request."""
    return list(conn.execute(
        sa.select(pa_file, pa_dataset.c.request_id)
        .select_from(pa_file.join(pa_dataset, pa_dataset.c.id == pa_file.c.dataset_id))
        .where(pa_dataset.c.agent == agent, pa_file.c.kind == "merged", pa_file.c.reported == sa.false(),
               pa_file.c.report_error.is_(None))
        .order_by(pa_file.c.id).limit(limit)
    ))


def merge_input_lfns(conn: sa.Connection, merge_job_id: int) -> list[str]:
    return list(conn.execute(
        sa.select(pa_file.c.lfn).where(pa_file.c.merge_job_id == merge_job_id).order_by(pa_file.c.id)
    ).scalars())


def record_merged_report(conn: sa.Connection, file_id: int, refused: str | None = None) -> None:
    """A merged file reported (ProdManager took it, or had it already), or refused, with why."""
    values: dict[str, Any] = {"reported": True} if refused is None else {"report_error": refused}
    conn.execute(pa_file.update().where(pa_file.c.id == file_id, pa_file.c.reported == sa.false(),
                                        pa_file.c.report_error.is_(None)).values(**values))
