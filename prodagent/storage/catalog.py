"""The replica catalog's SQL: where each file's bytes are, with checksum and state.

Every write checks the state table (`replica_states`); recording is idempotent, so a repeated
delivery or a crash between the storage I/O and the record only repeats a harmless step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence, Set
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_dataset, pa_file, pa_file_parent, pa_replica
from prodagent.jobs import file_states, store
from prodagent.jobs.store import ID_CHUNK
from prodagent.storage import replica_states as rs

R = pa_replica


def record(conn: sa.Connection, rows: Sequence[dict[str, Any]], new_files: Set[int] = frozenset()) -> int:
    """Record replicas ({lfn or file_id, element, pfn, role, size, adler32}) as verified.

    A replica already recorded verified is left alone; a deleted or corrupt one written again
    becomes verified with its new facts. Returns how many rows were inserted or changed. In bulk:
    a few statements per thousand rows, whatever their number. `new_files`: ids of files
    registered in this transaction, which have no replica yet (not looked for)."""
    for row in rows:
        if row["role"] not in rs.ROLES:
            raise ValueError(f"unknown replica role {row['role']!r}")
    ids = store.file_ids_by_lfn(conn, [r["lfn"] for r in rows if "file_id" not in r])
    now = time.time()
    wanted: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        file_id = row.get("file_id") or ids.get(row.get("lfn", ""))
        if file_id is not None:
            wanted[(int(file_id), row["element"])] = {
                "pfn": row["pfn"], "role": row["role"], "size": row["size"], "adler32": row["adler32"],
                "state": rs.VERIFIED, "updated_at": now}
    file_ids = sorted({f for f, _e in wanted} - new_files)
    old: dict[tuple[int, str], sa.Row] = {}
    for i in range(0, len(file_ids), ID_CHUNK):
        for r in conn.execute(sa.select(R.c.id, R.c.file_id, R.c.element, R.c.state)
                              .where(R.c.file_id.in_(file_ids[i:i + ID_CHUNK])).with_for_update()):
            old[(int(r.file_id), r.element)] = r
    fresh = [{"file_id": f, "element": e, "created_at": now, **facts}
             for (f, e), facts in wanted.items() if (f, e) not in old]
    if fresh:
        conn.execute(R.insert(), fresh)
    rewritten = 0
    for key, facts in wanted.items():  # rare: a deleted or corrupt replica written again
        if key in old and old[key].state != rs.VERIFIED:
            rs.check(old[key].state, rs.VERIFIED)
            conn.execute(R.update().where(R.c.id == old[key].id).values(**facts))
            rewritten += 1
    return len(fresh) + rewritten


def set_state(conn: sa.Connection, replica_ids: Sequence[int], from_state: str, to_state: str) -> int:
    """Move replicas in `from_state` to `to_state`; the others are left (idempotent)."""
    rs.check(from_state, to_state)
    if not replica_ids:
        return 0
    return conn.execute(R.update().where(R.c.id.in_(list(replica_ids)), R.c.state == from_state)
                        .values(state=to_state, updated_at=time.time())).rowcount


def of_files(conn: sa.Connection, file_ids: Iterable[int]) -> list[sa.Row]:
    ids = list(file_ids)
    if not ids:
        return []
    return list(conn.execute(sa.select(R).where(R.c.file_id.in_(ids)).order_by(R.c.file_id, R.c.id)))


def on_elements(conn: sa.Connection, file_ids: Iterable[int]) -> set[int]:
    """The files among `file_ids` with a live replica on a storage element (not the work area):
    cleanup leaves their catalog state alone until those replicas are deleted."""
    ids = list(file_ids)
    if not ids:
        return set()
    return set(conn.execute(sa.select(R.c.file_id).where(
        R.c.file_id.in_(ids), R.c.element != rs.WORKAREA, R.c.state.in_(list(rs.LIVE)))).scalars())


def _agent_files(agent: str) -> sa.Select:
    return sa.select(pa_file.c.id).join(pa_dataset, pa_dataset.c.id == pa_file.c.dataset_id).where(
        pa_dataset.c.agent == agent)


def to_archive(conn: sa.Connection, agent: str, archive: str, limit: int = 100) -> list[sa.Row]:
    """Verified merged replicas (on an element) whose file has no verified copy on `archive`."""
    archived = sa.select(R.c.file_id).where(R.c.element == archive, R.c.state == rs.VERIFIED)
    return list(conn.execute(
        sa.select(R, pa_file.c.lfn).join(pa_file, pa_file.c.id == R.c.file_id)
        .where(R.c.role == rs.MERGED, R.c.state == rs.VERIFIED, R.c.element != rs.WORKAREA,
               R.c.file_id.in_(_agent_files(agent)), R.c.file_id.not_in(archived))
        .order_by(R.c.id).limit(limit)))


def to_delete(conn: sa.Connection, agent: str, archive: str | None, limit: int = 500) -> list[sa.Row]:
    """Live unmerged replicas on elements whose file needs them no more: the file is void or
    cleaned, or merged into a file with a verified merged replica (and, with an archive element,
    a verified archive copy). Nothing is deleted before its successor is verified."""
    merged = sa.alias(pa_file)
    successor_ok = sa.select(R.c.file_id).where(R.c.role == rs.MERGED, R.c.state == rs.VERIFIED)
    safe_parents = (sa.select(pa_file_parent.c.parent_id).join(merged, merged.c.id == pa_file_parent.c.file_id)
                    .where(merged.c.id.in_(successor_ok)))
    if archive is not None:
        archived = sa.select(R.c.file_id).where(R.c.element == archive, R.c.state == rs.VERIFIED)
        safe_parents = safe_parents.where(merged.c.id.in_(archived))
    gone = pa_file.c.state.in_([file_states.VOID, file_states.CLEANED])
    merged_ok = sa.and_(pa_file.c.state == file_states.MERGED, pa_file.c.id.in_(safe_parents))
    return list(conn.execute(
        sa.select(R, pa_file.c.lfn, pa_file.c.merge_job_id).join(pa_file, pa_file.c.id == R.c.file_id)
        .where(R.c.role == rs.UNMERGED, R.c.element != rs.WORKAREA, R.c.state.in_(list(rs.LIVE)),
               R.c.file_id.in_(_agent_files(agent)), sa.or_(gone, merged_ok))
        .order_by(R.c.id).limit(limit)))
