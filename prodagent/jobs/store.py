"""All job, file and dataset SQL of the agent, in one place.

Transitions go through `transition()`, which applies the state table, records every change
(job, from, to, when, retry, why) and skips jobs already past the change, so a handler that
runs twice changes nothing the second time.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import (
    pa_allocation,
    pa_dataset,
    pa_file,
    pa_file_input,
    pa_file_parent,
    pa_job,
    pa_job_transition,
    pa_run,
    pa_site,
)
from prodagent.jobs import allocations as allocations_sql
from prodagent.jobs import file_states, states

J = pa_job
ID_CHUNK = 1000  # ids per IN list: short lists of keys stay index lookups on MariaDB

KILLABLE = states.ALL_STATES - states.TERMINAL - states.DONE_OK  # jobs not yet ended
# States from which a killed job may have a batch job to remove: in the batch system, or
# `created` (JobSubmitter may be submitting it right now; killing an unknown batch id is harmless).
MAY_BE_IN_BATCH = states.IN_BATCH | {states.CREATED}


@dataclass(frozen=True)
class Moved:
    """Result of a bulk transition: which jobs moved, and from where."""

    ids: list[int]
    previous: dict[int, str]


def insert_jobs(conn: sa.Connection, rows: Sequence[dict[str, Any]], reason: str | Sequence[str]) -> list[int]:
    """Insert new jobs in state `created`; return their ids in the order given.

    `reason` is recorded on each job's first transition: one for all, or one per row.
    """
    if not rows:
        return []
    reasons = [reason] * len(rows) if isinstance(reason, str) else list(reason)
    now = time.time()
    names = [r["name"] for r in rows]
    conn.execute(J.insert(), [{**r, "state": states.CREATED, "created_at": now, "updated_at": now} for r in rows])
    ids_by_name = dict(conn.execute(sa.select(J.c.name, J.c.id).where(J.c.name.in_(names))).all())
    ids = [ids_by_name[n] for n in names]
    conn.execute(pa_job_transition.insert(), [
        {"job_id": i, "from_state": None, "to_state": states.CREATED, "at": now, "retry": 0, "reason": why}
        for i, why in zip(ids, reasons, strict=True)
    ])
    return ids


def transition(
    conn: sa.Connection, job_ids: Iterable[int], to_state: str, reason: str | None = None,
    per_job: dict[int, dict[str, Any]] | None = None, **fields: Any,
) -> Moved:
    """Move jobs to `to_state` where the table allows it; others are left as they are.

    `fields` are set on every moved job, `per_job[id]` on that job only, over `fields` (a key
    that some jobs have and the others lack, and `fields` does not give, is NULL for the
    others). Rows are locked in id order, so concurrent transitions cannot deadlock on each other.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return Moved([], {})
    sources = states.allowed_from(to_state)
    rows: list[sa.Row] = []
    for i in range(0, len(ids), ID_CHUNK):  # short key lists: a locking read never scans the table
        rows += conn.execute(sa.select(J.c.id, J.c.state, J.c.retry).where(J.c.id.in_(ids[i:i + ID_CHUNK]))
                             .order_by(J.c.id).with_for_update())
    movable = [r for r in rows if r.state in sources]
    if not movable:
        return Moved([], {})
    now = time.time()
    moved_ids = [r.id for r in movable]
    extra = per_job or {}
    if extra:
        # Every moved job gets the same columns, its own values: sent as one JSON document per
        # thousand jobs and joined into one UPDATE (not a statement per job, nothing to escape
        # per value).
        keys = sorted({k for r in movable for k in extra.get(r.id, {})})
        common = {k: v for k, v in fields.items() if k not in keys}
        default = {k: v for k, v in fields.items() if k in keys}  # for the jobs without their own
        update = _per_job_update(conn.dialect.name, tuple(keys), tuple(sorted(common)))
        for i in range(0, len(movable), ID_CHUNK):
            doc = json.dumps([{"id": r.id, **default, **extra.get(r.id, {})} for r in movable[i:i + ID_CHUNK]])
            conn.execute(update, {"doc": doc, "to_state": to_state, "now": now,
                                  **{f"f_{k}": v for k, v in common.items()}})
    else:
        for i in range(0, len(moved_ids), ID_CHUNK):
            conn.execute(J.update().where(J.c.id.in_(moved_ids[i:i + ID_CHUNK]))
                         .values(state=to_state, updated_at=now, **fields))
    conn.execute(pa_job_transition.insert(), [
        {"job_id": r.id, "from_state": r.state, "to_state": to_state, "at": now,
         "retry": extra.get(r.id, {}).get("retry", fields.get("retry", r.retry)), "reason": reason}
        for r in movable
    ])
    return Moved(moved_ids, {r.id: r.state for r in movable})


@functools.lru_cache(maxsize=64)
def _per_job_update(dialect: str, keys: tuple[str, ...], fields: tuple[str, ...]) -> sa.TextClause:
    """UPDATE of pa_job from a JSON array of {id, key: value}: each listed job gets its own
    values of `keys` (a key it lacks: NULL), and all of them the state, time and `fields`.

    MariaDB reads the array as a JSON_TABLE, joined first (STRAIGHT_JOIN) to pa_job by its
    primary key, forced: on a small table the optimizer would rather scan it, and an UPDATE
    that scans locks every row it reads until commit. Its strings come as LONGTEXT, so that a value too long for its
    column fails the statement (strict mode) instead of being cut. SQLite reads it with
    json_each."""
    for name in (*keys, *fields):
        if name not in J.c or name == "id":
            raise ValueError(f"not a column a transition may set: {name!r}")
    sets = ["state = :to_state", "updated_at = :now", *(f"{f} = :f_{f}" for f in fields)]
    if dialect == "sqlite":
        picked = ", ".join(["json_extract(value, '$.id') AS id",
                            *(f"json_extract(value, '$.{k}') AS {k}" for k in keys)])
        assigned = ", ".join([*sets, *(f"{k} = v.{k}" for k in keys)])
        return sa.text(f"UPDATE pa_job SET {assigned} FROM (SELECT {picked} FROM json_each(:doc)) AS v"
                       " WHERE pa_job.id = v.id")
    columns = ", ".join(["id BIGINT PATH '$.id'", *(f"{k} {_json_type(J.c[k])} PATH '$.{k}'" for k in keys)])
    assigned = ", ".join([*(f"j.{s}" for s in sets), *(f"j.{k} = v.{k}" for k in keys)])
    return sa.text(f"UPDATE JSON_TABLE(:doc, '$[*]' COLUMNS ({columns})) AS v"
                   f" STRAIGHT_JOIN pa_job AS j FORCE INDEX (PRIMARY) ON j.id = v.id SET {assigned}")


def _json_type(column: sa.Column[Any]) -> str:
    """The JSON_TABLE type a value of `column` is read as."""
    if isinstance(column.type, sa.String | sa.Text):
        return "LONGTEXT CHARACTER SET utf8mb4"
    if isinstance(column.type, sa.Boolean | sa.Integer):
        return "BIGINT"
    if isinstance(column.type, sa.Float | sa.Double | sa.Numeric):
        return "DOUBLE"
    raise TypeError(f"pa_job.{column.name}: no JSON_TABLE type for {column.type!r}")


def jobs(conn: sa.Connection, job_ids: Iterable[int],
         columns: Sequence[sa.ColumnElement[Any]] | None = None, agent: str | None = None) -> list[sa.Row]:
    """These jobs in id order: whole rows, or only `columns` (which must include the id); given
    `agent`, only those that are that agent's."""
    ids = sorted(set(job_ids))
    rows: list[sa.Row] = []
    for i in range(0, len(ids), ID_CHUNK):
        query = sa.select(*(columns or [J])).where(J.c.id.in_(ids[i:i + ID_CHUNK]))
        rows += conn.execute((query.where(J.c.agent == agent) if agent else query).order_by(J.c.id))
    return rows


def jobs_in(conn: sa.Connection, agent: str, job_states: Iterable[str], limit: int | None = None,
            job_type: str | None = None, columns: Sequence[sa.ColumnElement[Any]] | None = None,
            updated_before: float | None = None) -> list[sa.Row]:
    """The agent's jobs in these states, in id order: whole rows, or only `columns`.

    `updated_before`: only jobs whose last change is older than that time (reconciliation).
    """
    query = sa.select(*(columns or [J])).where(J.c.agent == agent, J.c.state.in_(list(job_states))).order_by(J.c.id)
    if job_type:
        query = query.where(J.c.job_type == job_type)
    if updated_before is not None:
        query = query.where(J.c.updated_at < updated_before)
    if limit:
        query = query.limit(limit)
    return list(conn.execute(query))


def newest_transition_id(conn: sa.Connection) -> int:
    """The highest job-transition id there is (0: none yet)."""
    return int(conn.execute(sa.select(sa.func.max(pa_job_transition.c.id))).scalar() or 0)


def transitions_after(conn: sa.Connection, after_id: int, also: Sequence[int] = ()) -> list[tuple[int, int]]:
    """(transition id, job id) of every job transition with id > `after_id`, and of those with
    the ids in `also` (ids once skipped: a transaction that had not committed yet), by key."""
    T = pa_job_transition
    rows = [tuple(r) for r in conn.execute(sa.select(T.c.id, T.c.job_id).where(T.c.id > after_id))]
    ids = sorted(set(also))
    for i in range(0, len(ids), ID_CHUNK):
        rows += [tuple(r) for r in conn.execute(sa.select(T.c.id, T.c.job_id).where(T.c.id.in_(ids[i:i + ID_CHUNK])))]
    return rows  # type: ignore[return-value]


def count_by_state(conn: sa.Connection, agent: str, request_id: str | None = None) -> dict[tuple[str, str], int]:
    query = sa.select(J.c.job_type, J.c.state, sa.func.count()).where(J.c.agent == agent)
    if request_id:
        query = query.where(J.c.request_id == request_id)
    return {(t, s): int(n) for t, s, n in conn.execute(query.group_by(J.c.job_type, J.c.state))}


def select_jobs(conn: sa.Connection, agent: str, ids: Iterable[int] = (), job_states: Iterable[str] = (),
                request_id: str | None = None, error_class: str | None = None) -> list[sa.Row]:
    """The agent's jobs matching every filter given (none: all of them), in id order."""
    query = sa.select(J).where(J.c.agent == agent).order_by(J.c.id)
    if ids := sorted(set(ids)):
        query = query.where(J.c.id.in_(ids))
    if job_states := sorted(set(job_states)):
        query = query.where(J.c.state.in_(job_states))
    if request_id:
        query = query.where(J.c.request_id == request_id)
    if error_class:
        query = query.where(J.c.error_class == error_class)
    return list(conn.execute(query))


def in_batch_by_site(conn: sa.Connection, agent: str) -> dict[str, int]:
    """How many of the agent's jobs are in the batch system, per site."""
    return {site: int(n) for site, n in conn.execute(
        sa.select(J.c.site, sa.func.count()).where(J.c.agent == agent, J.c.state.in_(sorted(states.IN_BATCH)))
        .group_by(J.c.site)
    )}


def transition_reasons(conn: sa.Connection, agent: str, to_states: Iterable[str]) -> list[sa.Row]:
    """(to_state, reason) of every transition of the agent's jobs into these states."""
    return list(conn.execute(
        sa.select(pa_job_transition.c.to_state, pa_job_transition.c.reason)
        .join(J, J.c.id == pa_job_transition.c.job_id)
        .where(J.c.agent == agent, pa_job_transition.c.to_state.in_(sorted(set(to_states))))
    ))


def live_jobs_of_allocations_in(conn: sa.Connection, agent: str, alloc_states: Iterable[str]) -> list[int]:
    """Ids of the agent's jobs not yet ended whose allocation is in one of `alloc_states`."""
    A = allocations_sql.A
    held = sa.select(A.c.id).where(A.c.agent == agent, A.c.state.in_(sorted(set(alloc_states))))
    live = sorted(KILLABLE)
    return list(conn.execute(
        sa.select(J.c.id).where(J.c.agent == agent, J.c.state.in_(live), J.c.allocation_id.in_(held)).order_by(J.c.id)
    ).scalars())


# -- kills: the intent is a database fact; JobSubmitter removes the batch jobs --------------------

def kill_jobs(conn: sa.Connection, job_ids: Iterable[int], reason: str) -> Moved:
    """Move jobs not yet ended to `killed`, marking those that may have a batch job so that
    JobSubmitter removes it (outside any transaction, see `pending_kills`). Jobs already ended
    are left alone, so a repeated kill changes nothing."""
    moved = transition(conn, job_ids, states.KILLED, reason)
    marked = [i for i in moved.ids if moved.previous[i] in MAY_BE_IN_BATCH]
    if marked:
        conn.execute(J.update().where(J.c.id.in_(marked)).values(kill_pending_at=time.time()))
    return moved


def pending_kills(conn: sa.Connection, agent: str, limit: int | None = None) -> list[sa.Row]:
    """(id, name, retry) of the agent's killed jobs whose batch job is still to be removed, oldest first."""
    query = (sa.select(J.c.id, J.c.name, J.c.retry).where(J.c.agent == agent, J.c.kill_pending_at.is_not(None))
             .order_by(J.c.kill_pending_at, J.c.id))
    return list(conn.execute(query.limit(limit) if limit else query))


def clear_kill_pending(conn: sa.Connection, job_ids: Sequence[int]) -> int:
    """The batch jobs of these killed jobs are removed: clear their marks."""
    if not job_ids:
        return 0
    return conn.execute(
        J.update().where(J.c.id.in_(list(job_ids)), J.c.kill_pending_at.is_not(None)).values(kill_pending_at=None)
    ).rowcount


def history(conn: sa.Connection, job_id: int) -> list[sa.Row]:
    return list(conn.execute(
        sa.select(pa_job_transition).where(pa_job_transition.c.job_id == job_id).order_by(pa_job_transition.c.id)
    ))


def set_fields(conn: sa.Connection, job_id: int, **fields: Any) -> None:
    conn.execute(J.update().where(J.c.id == job_id).values(updated_at=time.time(), **fields))


# -- allocations: their SQL and state table live in prodagent.jobs.allocations ---------------------

allocation = allocations_sql.allocation
allocations = allocations_sql.allocations
allocations_in = allocations_sql.allocations_in
set_allocation = allocations_sql.set_allocation
set_allocations = allocations_sql.set_allocations
workflow_of = allocations_sql.workflow_of
workflow_for_request = allocations_sql.workflow_for_request


# -- datasets and files ------------------------------------------------------------------------

def ensure_dataset(conn: sa.Connection, agent: str, name: str, tier: str, request_id: str,
                   merge_policy: dict[str, Any]) -> int:
    try:
        return dataset_id(conn, agent, name)
    except LookupError:
        pass
    result = conn.execute(pa_dataset.insert().values(
        agent=agent, name=name, tier=tier, request_id=request_id,
        merge_policy=json.dumps(merge_policy), created_at=time.time(),
    ))
    return int(result.inserted_primary_key[0])


def dataset_id(conn: sa.Connection, agent: str, name: str) -> int:
    found = conn.execute(
        sa.select(pa_dataset.c.id).where(pa_dataset.c.agent == agent, pa_dataset.c.name == name)).scalar()
    if found is None:
        raise LookupError(f"no dataset {name!r} of agent {agent!r}")
    return int(found)


def dataset(conn: sa.Connection, dataset_id: int) -> sa.Row | None:
    return conn.execute(sa.select(pa_dataset).where(pa_dataset.c.id == dataset_id)).first()


def datasets_of(conn: sa.Connection, agent: str) -> list[sa.Row]:
    return list(conn.execute(sa.select(pa_dataset).where(pa_dataset.c.agent == agent).order_by(pa_dataset.c.id)))


def file_figures(conn: sa.Connection, dataset_id: int) -> list[sa.Row]:
    """(kind, state, files, bytes, events) of a dataset's files, per kind and state."""
    return list(conn.execute(
        sa.select(pa_file.c.kind, pa_file.c.state, sa.func.count(), sa.func.sum(pa_file.c.size),
                  sa.func.sum(pa_file.c.events))
        .where(pa_file.c.dataset_id == dataset_id).group_by(pa_file.c.kind, pa_file.c.state)
    ))


def run_figures(conn: sa.Connection, dataset_id: int) -> list[sa.Row]:
    """(run, kind, state, files, events) of a dataset's files, per run, kind and state."""
    return list(conn.execute(
        sa.select(pa_file.c.run, pa_file.c.kind, pa_file.c.state, sa.func.count(), sa.func.sum(pa_file.c.events))
        .where(pa_file.c.dataset_id == dataset_id).group_by(pa_file.c.run, pa_file.c.kind, pa_file.c.state)
        .order_by(pa_file.c.run)
    ))


def run_gates(conn: sa.Connection, agent: str, request_id: str) -> dict[int, str]:
    """{run: ProdManager's state of it} as last copied (requests merged per run only)."""
    return {int(r.run): str(r.state) for r in conn.execute(
        sa.select(pa_run.c.run, pa_run.c.state).where(pa_run.c.agent == agent, pa_run.c.request_id == request_id))}


def select_files(conn: sa.Connection, dataset_id: int | None = None, kind: str | None = None,
                 state: str | None = None, limit: int = 1000) -> list[sa.Row]:
    """Files matching every filter given, in id order, at most `limit`."""
    query = sa.select(pa_file).order_by(pa_file.c.id).limit(limit)
    if dataset_id is not None:
        query = query.where(pa_file.c.dataset_id == dataset_id)
    if kind:
        query = query.where(pa_file.c.kind == kind)
    if state:
        query = query.where(pa_file.c.state == state)
    return list(conn.execute(query))


def insert_files(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> FileIds:
    """Register files in their kind's first state; one already registered (same LFN) is left
    alone. Returns the id of every row's file and which of them are new."""
    if not rows:
        return FileIds({}, set())
    for r in rows:
        file_states.check_initial(r["kind"], r["state"])
    known = file_ids_by_lfn(conn, [r["lfn"] for r in rows])
    fresh = [{**r, "created_at": time.time()} for r in rows if r["lfn"] not in known]
    if not fresh:
        return FileIds(known, set())
    conn.execute(pa_file.insert(), fresh)
    added = file_ids_by_lfn(conn, [r["lfn"] for r in fresh])
    return FileIds({**known, **added}, set(added.values()))


@dataclass(frozen=True)
class FileIds:
    by_lfn: dict[str, int]
    new: set[int]  # registered by this call: no replica or input is recorded for them yet


def file_ids_by_lfn(conn: sa.Connection, lfns: Sequence[str]) -> dict[str, int]:
    """{lfn: id} of those of `lfns` that are registered, read by chunks of keys."""
    ids: dict[str, int] = {}
    unique = sorted(set(lfns))
    for i in range(0, len(unique), ID_CHUNK):
        ids.update((str(lfn), int(file_id)) for lfn, file_id in conn.execute(
            sa.select(pa_file.c.lfn, pa_file.c.id).where(pa_file.c.lfn.in_(unique[i:i + ID_CHUNK]))))
    return ids


def files_of_dataset(conn: sa.Connection, dataset_id: int, kind: str, file_states: Iterable[str]) -> list[sa.Row]:
    return list(conn.execute(
        sa.select(pa_file).where(pa_file.c.dataset_id == dataset_id, pa_file.c.kind == kind,
                                 pa_file.c.state.in_(list(file_states))).order_by(pa_file.c.id)
    ))


def add_parents(conn: sa.Connection, file_id: int, parent_ids: Sequence[int]) -> None:
    have = set(conn.execute(sa.select(pa_file_parent.c.parent_id).where(pa_file_parent.c.file_id == file_id)).scalars())
    fresh = [{"file_id": file_id, "parent_id": p} for p in parent_ids if p not in have]
    if fresh:
        conn.execute(pa_file_parent.insert(), fresh)


def add_file_inputs(conn: sa.Connection, inputs: dict[str, list[str]], ids: FileIds | None = None) -> None:
    """Record, for each unmerged file (by LFN), the input LFNs its job read; idempotent. `ids`:
    the files' ids as `insert_files` returned them (new files have no inputs recorded yet)."""
    inputs = {lfn: parents for lfn, parents in inputs.items() if parents}
    if not inputs:
        return
    by_lfn = ids.by_lfn if ids is not None else file_ids_by_lfn(conn, list(inputs))
    new = ids.new if ids is not None else set()
    old = sorted({by_lfn[lfn] for lfn in inputs if lfn in by_lfn} - new)
    have: set[tuple[int, str]] = set()
    for i in range(0, len(old), ID_CHUNK):
        have.update((int(f), str(lfn)) for f, lfn in conn.execute(
            sa.select(pa_file_input.c.file_id, pa_file_input.c.lfn).where(pa_file_input.c.file_id.in_(old[i:i + ID_CHUNK]))))
    fresh = [{"file_id": by_lfn[lfn], "lfn": p} for lfn, parents in inputs.items() if lfn in by_lfn
             for p in dict.fromkeys(parents) if (by_lfn[lfn], p) not in have]
    if fresh:
        conn.execute(pa_file_input.insert(), fresh)


def parent_lfns(conn: sa.Connection, file_id: int) -> list[str]:
    """The LFNs of the unmerged files merged into this file."""
    return list(conn.execute(
        sa.select(pa_file.c.lfn).join(pa_file_parent, pa_file_parent.c.parent_id == pa_file.c.id)
        .where(pa_file_parent.c.file_id == file_id).order_by(pa_file.c.lfn)).scalars())


def lineage(conn: sa.Connection, file_ids: Sequence[int]) -> dict[int, list[str]]:
    """For each file, the LFNs of the files it derives from in other tasks: an unmerged file's
    job inputs; a merged file's, those of its unmerged parents."""
    own = sa.select(pa_file_input.c.file_id, pa_file_input.c.lfn).where(pa_file_input.c.file_id.in_(list(file_ids)))
    via = (sa.select(pa_file_parent.c.file_id, pa_file_input.c.lfn)
           .join(pa_file_input, pa_file_input.c.file_id == pa_file_parent.c.parent_id)
           .where(pa_file_parent.c.file_id.in_(list(file_ids))))
    out: dict[int, list[str]] = {int(i): [] for i in file_ids}
    for file_id, lfn in conn.execute(sa.union(own, via).order_by("lfn")):
        out[int(file_id)].append(str(lfn))
    return out


# -- sites --------------------------------------------------------------------------------------

def upsert_site(conn: sa.Connection, agent: str, site: str, slots: int, running: int, queued: int) -> None:
    values = {"slots": slots, "running": running, "queued": queued, "updated_at": time.time()}
    updated = conn.execute(
        pa_site.update().where(pa_site.c.agent == agent, pa_site.c.site == site).values(**values)
    ).rowcount
    if not updated:
        conn.execute(pa_site.insert().values(agent=agent, site=site, **values))


def sites(conn: sa.Connection, agent: str) -> list[sa.Row]:
    return list(conn.execute(sa.select(pa_site).where(pa_site.c.agent == agent).order_by(pa_site.c.site)))


# -- merging and cleanup ------------------------------------------------------------------------

def lock_dataset(conn: sa.Connection, dataset_id: int) -> sa.Row | None:
    """The dataset's row, locked until commit: one grouping of a dataset at a time."""
    return conn.execute(
        sa.select(pa_dataset).where(pa_dataset.c.id == dataset_id).with_for_update()
    ).first()


def datasets_with_new_files(conn: sa.Connection, agent: str) -> list[int]:
    """Ids of this agent's datasets that hold unmerged files not yet given to a merge."""
    return sorted(conn.execute(
        sa.select(pa_file.c.dataset_id).distinct()
        .select_from(pa_file.join(pa_dataset, pa_dataset.c.id == pa_file.c.dataset_id))
        .where(pa_dataset.c.agent == agent, pa_file.c.kind == file_states.UNMERGED, pa_file.c.state == file_states.NEW)
    ).scalars())


def mergeable_files(conn: sa.Connection, dataset_id: int) -> list[sa.Row]:
    """Unmerged files of a dataset waiting for a merge, in id order: only outputs of allocations
    completed with ProdManager (never of a lost or still uncertain lease)."""
    return list(conn.execute(
        sa.select(pa_file.c.id, pa_file.c.size, pa_file.c.events, pa_file.c.created_at, pa_file.c.run)
        .where(pa_file.c.dataset_id == dataset_id, pa_file.c.kind == file_states.UNMERGED,
               pa_file.c.state == file_states.NEW, pa_file.c.merge_job_id.is_(None), allocations_sql.settled_output())
        .order_by(pa_file.c.id)
    ))


def ready_runs(conn: sa.Connection, agent: str, request_id: str) -> set[int]:
    """Runs of the request whose merge gate ProdManager last said was open (`ready`)."""
    return set(conn.execute(sa.select(pa_run.c.run).where(
        pa_run.c.agent == agent, pa_run.c.request_id == request_id, pa_run.c.state == "ready")).scalars())


def run_gated_requests(conn: sa.Connection, agent: str) -> list[str]:
    """Requests with unmerged files waiting in a dataset merged per run: their gate to refresh."""
    rows = conn.execute(
        sa.select(pa_dataset.c.request_id, pa_dataset.c.merge_policy).distinct()
        .select_from(pa_file.join(pa_dataset, pa_dataset.c.id == pa_file.c.dataset_id))
        .where(pa_dataset.c.agent == agent, pa_file.c.kind == file_states.UNMERGED,
               pa_file.c.state == file_states.NEW)
    ).all()
    return sorted({r.request_id for r in rows if json.loads(r.merge_policy).get("per_run")})


def record_runs(conn: sa.Connection, agent: str, request_id: str, run_states: dict[int, str]) -> None:
    """Replace the request's run gate rows with ProdManager's latest states."""
    conn.execute(pa_run.delete().where(pa_run.c.agent == agent, pa_run.c.request_id == request_id))
    now = time.time()
    if run_states:
        conn.execute(pa_run.insert(), [{"agent": agent, "request_id": request_id, "run": run, "state": state,
                                        "updated_at": now} for run, state in run_states.items()])


def request_has_live_work(conn: sa.Connection, agent: str, request_id: str) -> bool:
    """True while a production job of the request may still produce files in this agent."""
    live = conn.execute(
        sa.select(J.c.id).where(J.c.agent == agent, J.c.request_id == request_id,
                                J.c.job_type == "production", J.c.state.in_(sorted(states.LIVE))).limit(1)
    ).first()
    if live is not None:
        return True
    # An allocation not yet cut into jobs, or not yet completed with ProdManager, is live work too.
    return allocations_sql.waiting_for_jobs(conn, agent, request_id)


def job_names_like(conn: sa.Connection, prefix: str) -> set[str]:
    """Names of jobs starting with `prefix` (LIKE may over-match on `_`; callers compare exactly)."""
    return set(conn.execute(sa.select(J.c.name).where(J.c.name.like(prefix + "%"))).scalars())


def assign_merge(conn: sa.Connection, file_ids: Sequence[int], merge_job_id: int) -> int:
    """Give new files to a merge job (state new -> merging); return how many moved."""
    if not file_ids:
        return 0
    file_states.check(file_states.NEW, file_states.MERGING)
    return conn.execute(
        pa_file.update().where(pa_file.c.id.in_(list(file_ids)), pa_file.c.state == file_states.NEW,
                               pa_file.c.merge_job_id.is_(None))
        .values(state=file_states.MERGING, merge_job_id=merge_job_id)
    ).rowcount


def job_input_files(conn: sa.Connection, job: Any) -> list[dict[str, Any]]:
    """The input files of a processing job: its allocation's (`lfn`, `events`, `run`, ...)."""
    text = conn.execute(sa.select(pa_allocation.c.input_files)
                        .where(pa_allocation.c.id == job.allocation_id)).scalar()
    return list(json.loads(text)) if text else []


def input_lfns_of_jobs(conn: sa.Connection, job_ids: Sequence[int]) -> dict[int, list[str]]:
    """The input file LFNs of each processing job (its allocation's files); none for others."""
    if not job_ids:
        return {}
    ids = sorted(set(job_ids))
    out: dict[int, list[str]] = {}
    for n in range(0, len(ids), ID_CHUNK):  # short key lists: the join starts from the jobs' keys
        rows = conn.execute(sa.select(J.c.id, pa_allocation.c.input_files)
                            .join(pa_allocation, pa_allocation.c.id == J.c.allocation_id)
                            .where(J.c.id.in_(ids[n:n + ID_CHUNK]), pa_allocation.c.input_files.is_not(None)))
        out.update({int(i): [str(f["lfn"]) for f in json.loads(text)] for i, text in rows})
    return out


def unjudged_merges(conn: sa.Connection, agent: str, updated_before: float) -> list[sa.Row]:
    """The agent's merge jobs in success since before `updated_before` whose inputs still wait
    for the judgement (`merging`), in id order. An accepted merge stays in success until
    Cleanup is done with it; its inputs are `merged` by then, so it is not read again."""
    waiting = sa.exists(sa.select(1).where(pa_file.c.merge_job_id == J.c.id, pa_file.c.state == file_states.MERGING))
    return list(conn.execute(
        sa.select(J).where(J.c.agent == agent, J.c.state == states.SUCCESS, J.c.job_type == "merge",
                           J.c.updated_at < updated_before, waiting).order_by(J.c.id)
    ))


def merge_inputs(conn: sa.Connection, merge_job_id: int, lock: bool = False) -> list[sa.Row]:
    """The input files of a merge job, in id order (the order of its job.json)."""
    query = sa.select(pa_file).where(pa_file.c.merge_job_id == merge_job_id).order_by(pa_file.c.id)
    return list(conn.execute(query.with_for_update() if lock else query))


def set_file_states(conn: sa.Connection, file_ids: Sequence[int], from_state: str, to_state: str) -> int:
    """Move files from one state to the next (the table in `file_states` must allow it); files
    in another state are left alone."""
    file_states.check(from_state, to_state)
    if not file_ids:
        return 0
    return conn.execute(
        pa_file.update().where(pa_file.c.id.in_(list(file_ids)), pa_file.c.state == from_state).values(state=to_state)
    ).rowcount


def file_by_lfn(conn: sa.Connection, lfn: str) -> sa.Row | None:
    return conn.execute(sa.select(pa_file).where(pa_file.c.lfn == lfn)).first()


def file_by_id(conn: sa.Connection, file_id: int) -> sa.Row | None:
    return conn.execute(sa.select(pa_file).where(pa_file.c.id == file_id)).first()


def files_of_jobs(conn: sa.Connection, job_ids: Iterable[int]) -> list[sa.Row]:
    """The files the given jobs produced (any kind, any state)."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    return list(conn.execute(sa.select(pa_file).where(pa_file.c.job_id.in_(ids)).order_by(pa_file.c.id)))


def merge_jobs_in(conn: sa.Connection, agent: str, dataset_id: int, job_states: Iterable[str]) -> list[sa.Row]:
    return list(conn.execute(
        sa.select(J).where(J.c.agent == agent, J.c.dataset_id == dataset_id, J.c.job_type == "merge",
                           J.c.state.in_(list(job_states))).order_by(J.c.id)
    ))


def release_merge_inputs(conn: sa.Connection, merge_job_ids: Sequence[int]) -> int:
    """Give the inputs of failed merge jobs back to the dataset (merging -> new, no merge job)."""
    if not merge_job_ids:
        return 0
    file_states.check(file_states.MERGING, file_states.NEW)
    return conn.execute(
        pa_file.update().where(pa_file.c.merge_job_id.in_(list(merge_job_ids)),
                               pa_file.c.state == file_states.MERGING)
        .values(state=file_states.NEW, merge_job_id=None)
    ).rowcount


def merges_with_uncleaned_inputs(conn: sa.Connection, agent: str) -> list[int]:
    """Merge jobs (of the agent) accepted whose inputs are still on disk (`merged`, not `cleaned`)."""
    return sorted(conn.execute(
        sa.select(pa_file.c.merge_job_id).distinct()
        .select_from(pa_file.join(pa_dataset, pa_dataset.c.id == pa_file.c.dataset_id))
        .where(pa_dataset.c.agent == agent, pa_file.c.kind == file_states.UNMERGED,
               pa_file.c.state == file_states.MERGED)
    ).scalars())


def void_outputs_of_ended_allocations(conn: sa.Connection, agent: str) -> int:
    """Mark `void` the unmerged files still `new` whose allocation ended without a completion
    (lost, recalled, failed, released): they are never merged. How many were marked.

    Found by index without locks (ended allocations, their jobs, their files), then updated by
    primary key, so no scan of the file table locks rows other components write."""
    file_states.check(file_states.NEW, file_states.VOID)
    job_ids = list(conn.execute(allocations_sql.jobs_of_void_allocations(agent)).scalars())
    still_new = (pa_file.c.kind == file_states.UNMERGED, pa_file.c.state == file_states.NEW,
                 pa_file.c.merge_job_id.is_(None))
    file_ids: list[int] = []
    for i in range(0, len(job_ids), ID_CHUNK):
        file_ids += conn.execute(sa.select(pa_file.c.id).where(pa_file.c.job_id.in_(job_ids[i:i + ID_CHUNK]),
                                                               *still_new)).scalars()
    marked = 0
    for i in range(0, len(file_ids), ID_CHUNK):
        marked += conn.execute(pa_file.update().where(pa_file.c.id.in_(file_ids[i:i + ID_CHUNK]), *still_new)
                               .values(state=file_states.VOID)).rowcount
    return marked


def void_files(conn: sa.Connection, agent: str, limit: int = 1000) -> list[sa.Row]:
    """The agent's `void` files (still on disk), in id order, locked; at most `limit`. Found by
    the state index without locks, then locked by primary key (only those rows)."""
    ids = list(conn.execute(
        sa.select(pa_file.c.id).join(pa_dataset, pa_dataset.c.id == pa_file.c.dataset_id)
        .where(pa_file.c.state == file_states.VOID, pa_dataset.c.agent == agent)
        .order_by(pa_file.c.id).limit(limit)).scalars())
    if not ids:
        return []
    return list(conn.execute(sa.select(pa_file).where(pa_file.c.id.in_(ids), pa_file.c.state == file_states.VOID)
                             .order_by(pa_file.c.id).with_for_update()))


def transitions_since(conn: sa.Connection, agent: str, after_id: int, limit: int) -> list[sa.Row[Any]]:
    """The agent's production-job transitions with id > `after_id`, oldest first, each with its
    job's site, codes, resources, work area and ProdManager allocation id (`pm_id`)."""
    T, A = pa_job_transition, pa_allocation
    return list(conn.execute(
        sa.select(T.c.id, T.c.job_id, T.c.from_state, T.c.to_state, T.c.at, T.c.retry, T.c.reason,
                  J.c.name, J.c.retry.label("job_retry"), J.c.site, J.c.exit_code, J.c.error_class,
                  J.c.memory_mb, J.c.wall_s, J.c.cpu_s, J.c.max_rss_mb, J.c.workdir,
                  J.c.request_id, A.c.pm_id)
        .select_from(T.join(J, J.c.id == T.c.job_id).join(A, A.c.id == J.c.allocation_id))
        .where(T.c.id > after_id, J.c.agent == agent, A.c.pm_id > 0)
        .order_by(T.c.id).limit(limit)
        # From the transitions after the cursor, by key: MariaDB otherwise started from the
        # agent's jobs and sorted all their transitions (7.5 s instead of 0.4 s at 100,000 jobs).
        .prefix_with("STRAIGHT_JOIN", dialect="mysql")
    ))


def waiting_jobs_of(conn: sa.Connection, agent: str, pm_ids: list[int]) -> list[int]:
    """Ids of the agent's jobs waiting for an operator (paused, exhausted) for these ProdManager
    allocations."""
    if not pm_ids:
        return []
    return list(conn.execute(
        sa.select(J.c.id)
        .select_from(J.join(pa_allocation, pa_allocation.c.id == J.c.allocation_id))
        .where(J.c.agent == agent, J.c.state.in_(states.NEEDS_OPERATOR), pa_allocation.c.pm_id.in_(pm_ids))
    ).scalars())
