"""Every SQL statement ProdManager issues, as small functions over a Connection.

Services compose these inside `Database.transaction`; nothing outside this module builds SQL.
Differences between SQLite and MariaDB stay here: `with_for_update(skip_locked=True)` renders
`FOR UPDATE SKIP LOCKED` on MariaDB and nothing on SQLite, where BEGIN IMMEDIATE already
serialises writers. Rows touched by one transaction are always locked allocations first, then
their request, so concurrent acquire, report, complete and abort cannot deadlock each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from prodmanager.db.schema import (
    agent,
    allocation,
    file,
    file_parent,
    request,
    request_history,
    run,
    token,
)
from prodmanager.states import ACQUIRABLE, AllocationState

OPEN = AllocationState.OPEN.value
INSERT_CHUNK = 1000

# --- tokens -------------------------------------------------------------------------------------


def insert_token(
    conn: sa.Connection, name: str, role: str, sha256: str, now: float, allow_commands: bool = False
) -> int:
    result = conn.execute(
        token.insert().values(
            name=name,
            role=role,
            token_sha256=sha256,
            created_at=now,
            allow_commands=allow_commands,
        )
    )
    return int(result.inserted_primary_key[0])


def token_by_hash(conn: sa.Connection, sha256: str) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(token).where(token.c.token_sha256 == sha256, token.c.revoked_at.is_(None))
    ).first()


def list_tokens(conn: sa.Connection) -> Sequence[sa.Row[Any]]:
    cols = [
        token.c.id,
        token.c.name,
        token.c.role,
        token.c.allow_commands,
        token.c.created_at,
        token.c.revoked_at,
    ]
    return conn.execute(sa.select(*cols).order_by(token.c.id)).all()


def revoke_token(conn: sa.Connection, token_id: int, now: float) -> int:
    return conn.execute(
        token.update()
        .where(token.c.id == token_id, token.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount


# --- agents -------------------------------------------------------------------------------------


def get_agent(conn: sa.Connection, name: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(agent).where(agent.c.name == name)).first()


def insert_agent(
    conn: sa.Connection, name: str, sites: str, capacity: int, token_name: str, now: float
) -> None:
    conn.execute(
        agent.insert().values(
            name=name,
            sites=sites,
            capacity=capacity,
            token_name=token_name,
            registered_at=now,
            last_seen=now,
        )
    )


def update_agent(conn: sa.Connection, name: str, sites: str, capacity: int, now: float) -> None:
    conn.execute(
        agent.update()
        .where(agent.c.name == name)
        .values(sites=sites, capacity=capacity, last_seen=now)
    )


def touch_agent(conn: sa.Connection, name: str, now: float) -> None:
    conn.execute(agent.update().where(agent.c.name == name).values(last_seen=now))


def list_agents(conn: sa.Connection, now: float) -> Sequence[sa.Row[Any]]:
    """Every agent with `held` (jobs in its live leases, what its capacity counts) and `leases`."""
    live = [allocation.c.agent == agent.c.name, allocation.c.state == OPEN, allocation.c.lease_expires >= now]
    held = sa.select(sa.func.coalesce(sa.func.sum(allocation.c.n_jobs), 0)).where(*live).scalar_subquery()
    leases = sa.select(sa.func.count()).where(*live).scalar_subquery()
    return conn.execute(
        sa.select(agent, held.label("held"), leases.label("leases")).order_by(agent.c.name)
    ).all()


# --- requests -----------------------------------------------------------------------------------


def insert_request(conn: sa.Connection, **values: Any) -> int:
    result = conn.execute(request.insert().values(**values))
    return int(result.inserted_primary_key[0])


def set_run_number(conn: sa.Connection, request_id: int, run_number: int) -> None:
    conn.execute(request.update().where(request.c.id == request_id).values(run_number=run_number))


def get_request(conn: sa.Connection, request_id: int, lock: bool = False) -> sa.Row[Any] | None:
    query = sa.select(request).where(request.c.id == request_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def request_by_name(conn: sa.Connection, name: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(request).where(request.c.name == name)).first()


def list_requests(
    conn: sa.Connection, states: Iterable[str] | None, owner: str | None, limit: int
) -> Sequence[sa.Row[Any]]:
    cols = [c for c in request.c if c.name != "spec"]
    query = sa.select(*cols).order_by(request.c.id.desc()).limit(limit)
    if states:
        query = query.where(request.c.state.in_(list(states)))
    if owner is not None:
        query = query.where(request.c.owner == owner)
    return conn.execute(query).all()


def acquirable_requests(conn: sa.Connection) -> Sequence[sa.Row[Any]]:
    """Requests that may hand out work, in the order work goes out: priority, then age."""
    query = (
        sa.select(request.c.id, request.c.state, request.c.priority, request.c.sites)
        .where(request.c.state.in_([s.value for s in ACQUIRABLE]))
        .order_by(request.c.priority.desc(), request.c.id)
    )
    return conn.execute(query).all()


def request_spec(conn: sa.Connection, request_id: int) -> sa.Row[Any] | None:
    query = sa.select(request.c.id, request.c.name, request.c.run_number, request.c.spec)
    return conn.execute(query.where(request.c.id == request_id)).first()


def change_request_state(
    conn: sa.Connection, request_id: int, from_state: str, to_state: str, now: float
) -> bool:
    """Compare-and-set of the state; False when another transaction moved it first."""
    result = conn.execute(
        request.update()
        .where(request.c.id == request_id, request.c.state == from_state)
        .values(state=to_state, updated_at=now)
    )
    return result.rowcount == 1


def insert_history(
    conn: sa.Connection,
    request_id: int,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str,
    now: float,
) -> None:
    conn.execute(
        request_history.insert().values(
            request_id=request_id,
            from_state=from_state,
            to_state=to_state,
            actor=actor[:100],
            reason=reason[:500],
            at=now,
        )
    )


def history(conn: sa.Connection, request_id: int) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(request_history)
        .where(request_history.c.request_id == request_id)
        .order_by(request_history.c.id)
    ).all()


def state_before_pause(conn: sa.Connection, request_id: int) -> str | None:
    return conn.execute(
        sa.select(request_history.c.from_state)
        .where(request_history.c.request_id == request_id, request_history.c.to_state == "paused")
        .order_by(request_history.c.id.desc())
        .limit(1)
    ).scalar()


def insert_allocations(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        conn.execute(allocation.insert(), rows[start : start + INSERT_CHUNK])


def lock_available(
    conn: sa.Connection, request_id: int, now: float, limit: int, exclude: Sequence[int] = ()
) -> Sequence[sa.Row[Any]]:
    """Lock up to `limit` open allocations of a request whose lease is free or expired (not
    those in `exclude`: rows this transaction locked already).

    Rows other transactions hold are skipped, not waited for: concurrent acquirers get
    disjoint sets. Never-leased rows (expiry 0) come first, in job order.
    """
    query = (
        sa.select(allocation.c.id, allocation.c.n_events, allocation.c.n_jobs, allocation.c.lease_epoch)
        .where(
            allocation.c.request_id == request_id,
            allocation.c.state == OPEN,
            allocation.c.lease_expires < now,
        )
        .order_by(allocation.c.lease_expires, allocation.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        query = query.where(allocation.c.id.not_in(list(exclude)))
    return conn.execute(query).all()


def lease(
    conn: sa.Connection,
    ids: list[int],
    agent_name: str,
    lease_token: str,
    lease_seconds: float,
    now: float,
) -> int:
    """Give `ids` to an agent under a new lease; the condition re-checks that they are free."""
    result = conn.execute(
        allocation.update()
        .where(
            allocation.c.id.in_(ids),
            allocation.c.state == OPEN,
            allocation.c.lease_expires < now,
        )
        .values(
            agent=agent_name,
            lease_token=lease_token,
            lease_epoch=allocation.c.lease_epoch + 1,
            lease_expires=now + lease_seconds,
            lease_seconds=lease_seconds,
            events_done=0,
            job_state=None,
            updated_at=now,
        )
    )
    return result.rowcount


def leased_rows(conn: sa.Connection, ids: list[int], lease_token: str) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(allocation)
        .where(allocation.c.id.in_(ids), allocation.c.lease_token == lease_token)
        .order_by(allocation.c.id)
    ).all()


def leased_by_request(conn: sa.Connection, request_ids: Sequence[int], now: float) -> dict[int, int]:
    """Jobs in allocations under a live lease, per request (fair shares)."""
    if not request_ids:
        return {}
    rows = conn.execute(
        sa.select(allocation.c.request_id, sa.func.sum(allocation.c.n_jobs))
        .where(allocation.c.request_id.in_(list(request_ids)), allocation.c.state == OPEN,
               allocation.c.lease_expires >= now)
        .group_by(allocation.c.request_id)
    )
    return {int(r[0]): int(r[1]) for r in rows}


def held_count(conn: sa.Connection, agent_name: str, now: float) -> int:
    """Jobs in the agent's live leases: what its registered capacity counts."""
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(allocation.c.n_jobs), 0)).where(
                allocation.c.agent == agent_name,
                allocation.c.state == OPEN,
                allocation.c.lease_expires >= now,
            )
        ).scalar_one()
    )


# --- allocations: leases held by agents ----------------------------------------------------------


def _held(allocation_id: int, lease_token: str, agent_name: str) -> list[sa.ColumnElement[bool]]:
    return [
        allocation.c.id == allocation_id,
        allocation.c.lease_token == lease_token,
        allocation.c.agent == agent_name,
        allocation.c.state == OPEN,
    ]


def renew(conn: sa.Connection, agent_name: str, leases: list[tuple[int, str]], now: float) -> int:
    """Extend the leases whose token still matches by their length (even if expired, as long
    as nobody else took the allocation meanwhile)."""
    if not leases:
        return 0
    return conn.execute(
        allocation.update()
        .where(
            sa.tuple_(allocation.c.id, allocation.c.lease_token).in_(leases),
            allocation.c.agent == agent_name,
            allocation.c.state == OPEN,
        )
        .values(lease_expires=now + allocation.c.lease_seconds, updated_at=now)
    ).rowcount


def lease_status(conn: sa.Connection, ids: list[int]) -> Sequence[sa.Row[Any]]:
    cols = [
        allocation.c.id,
        allocation.c.request_id,
        allocation.c.state,
        allocation.c.agent,
        allocation.c.lease_token,
        allocation.c.lease_expires,
        allocation.c.events_done,
    ]
    return conn.execute(sa.select(*cols).where(allocation.c.id.in_(ids))).all()


def record_progress(
    conn: sa.Connection,
    allocation_id: int,
    lease_token: str,
    agent_name: str,
    events_done: int,
    job_state: str | None,
    now: float,
) -> int:
    """Record progress of a held allocation; it also extends the lease by its length."""
    values: dict[str, Any] = {
        "events_done": events_done,
        "lease_expires": now + allocation.c.lease_seconds,
        "updated_at": now,
    }
    if job_state is not None:
        values["job_state"] = job_state
    return conn.execute(
        allocation.update().where(*_held(allocation_id, lease_token, agent_name)).values(**values)
    ).rowcount


def finish(
    conn: sa.Connection,
    allocation_id: int,
    lease_token: str,
    agent_name: str,
    state: str,
    events_done: int | None,
    reason: str | None,
    now: float,
) -> int:
    """Move a held allocation to done or failed; the lease ends."""
    values: dict[str, Any] = {
        "state": state,
        "reason": reason,
        "updated_at": now,
        "job_state": None,
    }
    if events_done is not None:
        values["events_done"] = events_done
    return conn.execute(
        allocation.update().where(*_held(allocation_id, lease_token, agent_name)).values(**values)
    ).rowcount


def release(
    conn: sa.Connection,
    allocation_id: int,
    lease_token: str,
    agent_name: str,
    reason: str,
    now: float,
) -> int:
    """Give a held allocation back unfinished: it is free for the next acquire at once."""
    return conn.execute(
        allocation.update()
        .where(*_held(allocation_id, lease_token, agent_name))
        .values(
            agent=None,
            lease_token=None,
            lease_expires=0,
            events_done=0,
            job_state=None,
            reason=reason,
            updated_at=now,
        )
    ).rowcount


def get_allocation(conn: sa.Connection, allocation_id: int) -> sa.Row[Any] | None:
    return conn.execute(sa.select(allocation).where(allocation.c.id == allocation_id)).first()


def lock_allocations(conn: sa.Connection, ids: list[int]) -> dict[int, sa.Row[Any]]:
    """These allocations, locked in id order (no deadlock between two callers)."""
    query = sa.select(allocation).where(allocation.c.id.in_(sorted(set(ids)))).order_by(allocation.c.id)
    return {int(r.id): r for r in conn.execute(query.with_for_update())}


def finish_many(
    conn: sa.Connection, ids: list[int], lease_token: str, agent_name: str, state: str,
    events_done: int, now: float,
) -> int:
    """`finish` for allocations held under one token that all did `events_done` events."""
    return conn.execute(
        allocation.update()
        .where(allocation.c.id.in_(ids), allocation.c.lease_token == lease_token,
               allocation.c.agent == agent_name, allocation.c.state == OPEN)
        .values(state=state, reason=None, updated_at=now, job_state=None, events_done=events_done)
    ).rowcount


def recall_open(conn: sa.Connection, request_id: int, reason: str, now: float) -> int:
    return conn.execute(
        allocation.update()
        .where(allocation.c.request_id == request_id, allocation.c.state == OPEN)
        .values(state=AllocationState.RECALLED.value, reason=reason, updated_at=now)
    ).rowcount


def has_open(conn: sa.Connection, request_id: int) -> bool:
    """True while any allocation of the request is open (waiting or leased)."""
    query = (
        sa.select(allocation.c.id)
        .where(allocation.c.request_id == request_id, allocation.c.state == OPEN)
        .limit(1)
    )
    return conn.execute(query).first() is not None


def count_by_state(conn: sa.Connection, request_id: int) -> dict[str, int]:
    rows = conn.execute(
        sa.select(allocation.c.state, sa.func.count())
        .where(allocation.c.request_id == request_id)
        .group_by(allocation.c.state)
    ).all()
    return {state: int(n) for state, n in rows}


def progress_made(conn: sa.Connection, request_id: int) -> bool:
    """True once any allocation of the request finished or reported events."""
    query = (
        sa.select(allocation.c.id)
        .where(
            allocation.c.request_id == request_id,
            sa.or_(allocation.c.state.in_(["done", "failed"]), allocation.c.events_done > 0),
        )
        .limit(1)
    )
    return conn.execute(query).first() is not None


def allocations_of_request(
    conn: sa.Connection,
    request_id: int,
    states: Iterable[str] | None = None,
    limit: int | None = None,
) -> Sequence[sa.Row[Any]]:
    query = (
        sa.select(allocation)
        .where(allocation.c.request_id == request_id)
        .order_by(allocation.c.job_index)
    )
    if states is not None:
        query = query.where(allocation.c.state.in_(list(states)))
    if limit is not None:
        query = query.limit(limit)
    return conn.execute(query).all()


def allocation_totals(
    conn: sa.Connection, request_ids: list[int], now: float
) -> Sequence[sa.Row[Any]]:
    """Per request, state and lease: allocation count, events cut, events reported done."""
    leased = sa.case((allocation.c.lease_expires >= now, 1), else_=0).label("leased")
    return conn.execute(
        sa.select(
            allocation.c.request_id,
            allocation.c.state,
            leased,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(allocation.c.n_events), 0).label("events"),
            sa.func.coalesce(sa.func.sum(allocation.c.events_done), 0).label("done"),
        )
        .where(allocation.c.request_id.in_(request_ids))
        .group_by(allocation.c.request_id, allocation.c.state, leased)
    ).all()


def job_states(conn: sa.Connection, request_ids: list[int], now: float) -> Sequence[sa.Row[Any]]:
    """Per request, the job states agents last reported for allocations they hold."""
    return conn.execute(
        sa.select(allocation.c.request_id, allocation.c.job_state, sa.func.count().label("n"))
        .where(
            allocation.c.request_id.in_(request_ids),
            allocation.c.state == OPEN,
            allocation.c.lease_expires >= now,
            allocation.c.job_state.is_not(None),
        )
        .group_by(allocation.c.request_id, allocation.c.job_state)
    ).all()


# --- files --------------------------------------------------------------------------------------


def supersede_files(conn: sa.Connection, allocation_ids: list[int]) -> int:
    """Files reported under an earlier lease of these allocations no longer count."""
    return conn.execute(
        file.update()
        .where(
            file.c.allocation_id.in_(allocation_ids),
            file.c.kind == "unmerged",
            file.c.state == "valid",
        )
        .values(state="superseded")
    ).rowcount


def files_by_lfn(conn: sa.Connection, lfns: list[str]) -> Sequence[sa.Row[Any]]:
    if not lfns:
        return []
    return conn.execute(sa.select(file).where(file.c.lfn.in_(lfns))).all()


def insert_files(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(file.insert(), rows)


def revive_file(
    conn: sa.Connection, file_id: int, lease_epoch: int, values: dict[str, Any]
) -> None:
    """Reuse the row of a superseded file whose LFN the allocation's new lease wrote again."""
    conn.execute(
        file.update()
        .where(file.c.id == file_id, file.c.state == "superseded")
        .values(state="valid", lease_epoch=lease_epoch, **values)
    )


def insert_file_parents(conn: sa.Connection, file_id: int, lfns: list[str]) -> None:
    if lfns:
        conn.execute(file_parent.insert(), [{"file_id": file_id, "lfn": lfn} for lfn in lfns])


def files_of_request(conn: sa.Connection, request_id: int, kind: str | None) -> list[tuple[sa.Row[Any], list[str]]]:
    """The request's files (of `kind`, if given) in id order, each with its parents' LFNs."""
    query = sa.select(file).where(file.c.request_id == request_id).order_by(file.c.id)
    rows = conn.execute(query.where(file.c.kind == kind) if kind else query).all()
    parents: dict[int, list[str]] = {}
    for file_id, lfn in conn.execute(
            sa.select(file_parent.c.file_id, file_parent.c.lfn)
            .join(file, file.c.id == file_parent.c.file_id).where(file.c.request_id == request_id)
            .order_by(file_parent.c.lfn)):
        parents.setdefault(int(file_id), []).append(str(lfn))
    return [(r, parents.get(int(r.id), [])) for r in rows]


def insert_file(conn: sa.Connection, **values: Any) -> int:
    return int(conn.execute(file.insert().values(**values)).inserted_primary_key[0])


def mark_merged(conn: sa.Connection, file_ids: list[int], merged_id: int) -> int:
    return conn.execute(
        file.update()
        .where(file.c.id.in_(file_ids), file.c.state == "valid", file.c.kind == "unmerged")
        .values(state="merged", merged_into=merged_id)
    ).rowcount


def allocation_leases(conn: sa.Connection, allocation_ids: list[int]) -> Sequence[sa.Row[Any]]:
    """(id, state, agent, lease_epoch) of these allocations: who finished them, under which lease."""
    if not allocation_ids:
        return []
    cols = [allocation.c.id, allocation.c.state, allocation.c.agent, allocation.c.lease_epoch]
    return conn.execute(sa.select(*cols).where(allocation.c.id.in_(sorted(set(allocation_ids))))).all()


def file_totals(conn: sa.Connection, request_ids: list[int]) -> Sequence[sa.Row[Any]]:
    """Per request, kind and state: file count, bytes and events."""
    return conn.execute(
        sa.select(
            file.c.request_id,
            file.c.kind,
            file.c.state,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(file.c.size), 0).label("size"),
            sa.func.coalesce(sa.func.sum(file.c.events), 0).label("events"),
        )
        .where(file.c.request_id.in_(request_ids))
        .group_by(file.c.request_id, file.c.kind, file.c.state)
    ).all()


def has_valid_unmerged(conn: sa.Connection, request_id: int) -> bool:
    """Whether an unmerged file of the request still waits for its merge (the first one found)."""
    return conn.execute(
        sa.select(file.c.id).where(
            file.c.request_id == request_id, file.c.kind == "unmerged", file.c.state == "valid",
        ).limit(1)
    ).first() is not None


def table_counts(conn: sa.Connection) -> dict[str, int]:
    """Row count of every ProdManager table (tests use it to prove nothing changed)."""
    tables = [request, request_history, allocation, file, agent, token]
    return {
        t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        for t in tables
    }


# --- runs of processing requests ----------------------------------------------------------------


def run_allocations(conn: sa.Connection, request_id: int) -> Sequence[sa.Row[Any]]:
    """(id, state, lease_expires, input_files) of the request's allocations, in job order."""
    cols = [allocation.c.id, allocation.c.state, allocation.c.lease_expires, allocation.c.input_files]
    return conn.execute(
        sa.select(*cols).where(allocation.c.request_id == request_id).order_by(allocation.c.job_index)
    ).all()


def unmerged_outputs(conn: sa.Connection, request_id: int) -> Sequence[sa.Row[Any]]:
    """(allocation_id, state, events) of the request's unmerged files that count (not superseded)."""
    return conn.execute(
        sa.select(file.c.allocation_id, file.c.state, file.c.events).where(
            file.c.request_id == request_id, file.c.kind == "unmerged", file.c.state != "superseded"
        )
    ).all()


def run_decisions(conn: sa.Connection, request_id: int) -> dict[int, sa.Row[Any]]:
    rows = conn.execute(sa.select(run).where(run.c.request_id == request_id)).all()
    return {int(r.run): r for r in rows}


def set_run_decision(
    conn: sa.Connection, request_id: int, run_number: int, decision: str | None,
    actor: str, reason: str, now: float,
) -> None:
    """Record (or, with None, forget) the operator's decision on a run."""
    conn.execute(run.delete().where(run.c.request_id == request_id, run.c.run == run_number))
    if decision is not None:
        conn.execute(run.insert().values(request_id=request_id, run=run_number, decision=decision,
                                         actor=actor, reason=reason, at=now))


def reopen_failed(conn: sa.Connection, allocation_ids: list[int], reason: str, now: float) -> int:
    """Failed allocations back to open and unleased, to be processed again (reprocess)."""
    if not allocation_ids:
        return 0
    return conn.execute(
        allocation.update()
        .where(allocation.c.id.in_(allocation_ids), allocation.c.state == AllocationState.FAILED.value)
        .values(state=OPEN, agent=None, lease_token=None, lease_expires=0, events_done=0,
                job_state=None, reason=reason, updated_at=now)
    ).rowcount



# --- chained requests ---------------------------------------------------------------------------


def requests_of_kind(conn: sa.Connection, kinds: list[str], states: Iterable[str] | None = None) -> Sequence[sa.Row[Any]]:
    """(id, state, spec, run_number, owner) of requests of these kinds (and states), oldest
    first."""
    query = sa.select(request.c.id, request.c.state, request.c.spec, request.c.run_number,
                      request.c.owner).where(
        request.c.kind.in_(kinds)).order_by(request.c.id)
    if states is not None:
        query = query.where(request.c.state.in_(list(states)))
    return conn.execute(query).all()


def merged_files_of(conn: sa.Connection, request_id: int) -> Sequence[sa.Row[Any]]:
    """The request's merged files, in registration order."""
    return conn.execute(sa.select(file).where(file.c.request_id == request_id, file.c.kind == "merged")
                        .order_by(file.c.id)).all()


def next_job_index(conn: sa.Connection, request_id: int) -> int:
    top = conn.execute(sa.select(sa.func.max(allocation.c.job_index))
                       .where(allocation.c.request_id == request_id)).scalar()
    return 0 if top is None else int(top) + 1


def handed_lfns(conn: sa.Connection, request_id: int) -> set[str]:
    """LFNs already given to the request's allocations (as input)."""
    found: set[str] = set()
    for text in conn.execute(sa.select(allocation.c.input_files).where(
            allocation.c.request_id == request_id)).scalars():
        found.update(f["lfn"] for f in json.loads(text or "[]"))
    return found


def add_to_totals(conn: sa.Connection, request_id: int, jobs: int, events: int, now: float) -> None:
    conn.execute(request.update().where(request.c.id == request_id).values(
        total_jobs=request.c.total_jobs + jobs, total_events=request.c.total_events + events, updated_at=now))
