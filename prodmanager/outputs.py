"""Output files reported by agents: unmerged files of held allocations and merged files.

Runs inside the caller's transaction. Files are unique by LFN; a file reported again under the
same lease is a duplicate, not a second file; a merged file retires exactly its inputs, which
must be valid outputs of done allocations of the same request and hold the same events.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from prodmanager import lifecycle, runs
from prodmanager.db import queries as q
from prodmanager.errors import Conflict, Forbidden, InvalidInput
from prodmanager.models import MergedFile, OutputFile
from prodmanager.states import RequestState


def store_files(
    conn: sa.Connection, row: sa.Row[Any], files: list[OutputFile], agent_name: str, now: float
) -> tuple[int, int]:
    """Record output files of a held allocation; a file reported again is a duplicate."""
    unique = {f.lfn: f for f in files}
    existing = {e.lfn: e for e in q.files_by_lfn(conn, list(unique))}
    new_rows = []
    duplicate = 0
    for lfn, f in unique.items():
        values = _values(f, agent_name)
        old = existing.get(lfn)
        if old is None:
            new_rows.append(new_file_row(row, f, agent_name, now))
        elif old.allocation_id == row.id and old.lease_epoch == row.lease_epoch:
            duplicate += 1
        elif old.allocation_id == row.id and old.state == "superseded":
            q.revive_file(conn, old.id, row.lease_epoch, values)
        else:
            raise Conflict(
                f"file {lfn} is already registered for request {old.request_id} "
                f"(allocation {old.allocation_id})",
                lfn=lfn,
            )
    q.insert_files(conn, new_rows)
    return len(unique) - duplicate, duplicate + len(files) - len(unique)


def _values(f: OutputFile, agent_name: str) -> dict[str, Any]:
    return {"size": f.size, "checksum": f.checksum, "events": f.events, "agent": agent_name}


def new_file_row(row: sa.Row[Any], f: OutputFile, agent_name: str, now: float) -> dict[str, Any]:
    """The `pm_file` row of an unmerged output first reported for held allocation `row`."""
    return {
        "lfn": f.lfn,
        "request_id": row.request_id,
        "allocation_id": row.id,
        "lease_epoch": row.lease_epoch,
        "kind": "unmerged",
        "state": "valid",
        "merged_into": None,
        "created_at": now,
        **_values(f, agent_name),
    }


def store_merged(
    conn: sa.Connection, request_id: int, merged: MergedFile, agent_name: str, now: float
) -> bool:
    """Register one merged file; False when it was registered before (same inputs)."""
    existing = q.files_by_lfn(conn, [merged.lfn])
    if existing:
        old = existing[0]
        if old.kind == "merged" and old.request_id == request_id and old.agent == agent_name:
            return False
        raise Conflict(f"file {merged.lfn} is already registered", lfn=merged.lfn)
    inputs = list(q.files_by_lfn(conn, list(dict.fromkeys(merged.inputs))))
    _check_merge_inputs(conn, request_id, merged, inputs, agent_name)
    merged_id = q.insert_file(
        conn,
        lfn=merged.lfn,
        request_id=request_id,
        allocation_id=None,
        lease_epoch=0,
        kind="merged",
        state="valid",
        size=merged.size,
        checksum=merged.checksum,
        events=merged.events,
        merged_into=None,
        agent=agent_name,
        created_at=now,
        pfn=merged.pfn,
    )
    if q.mark_merged(conn, [int(f.id) for f in inputs], merged_id) != len(inputs):
        raise Conflict(f"inputs of {merged.lfn} were merged concurrently by another report")
    q.insert_file_parents(conn, merged_id, list(dict.fromkeys(merged.parents)))
    return True


def _check_merge_inputs(
    conn: sa.Connection,
    request_id: int,
    merged: MergedFile,
    inputs: list[sa.Row[Any]],
    agent_name: str,
) -> None:
    """Each input must be an unmerged file of this request, still valid, that this agent
    registered for an allocation it completed under the lease that produced the file."""
    found = {f.lfn for f in inputs}
    unknown = [lfn for lfn in merged.inputs if lfn not in found]
    if unknown:
        raise Conflict(f"unknown input files of {merged.lfn}: {', '.join(unknown[:5])}")
    foreign = [f.lfn for f in inputs if f.request_id != request_id or f.kind != "unmerged"]
    if foreign:
        raise Conflict(
            f"inputs not unmerged files of request {request_id}: {', '.join(foreign[:5])}"
        )
    others = [f.lfn for f in inputs if f.agent != agent_name]
    if others:
        raise Forbidden(
            f"inputs of {merged.lfn} were produced by another agent, not '{agent_name}': "
            f"{', '.join(others[:5])}",
            lfn=others[0],
        )
    spent = [f"{f.lfn} ({f.state})" for f in inputs if f.state != "valid"]
    if spent:
        raise Conflict(f"inputs already merged or superseded: {', '.join(spent[:5])}")
    leases = {int(r.id): r for r in q.allocation_leases(conn, [int(f.allocation_id) for f in inputs])}
    unfinished = [f.lfn for f in inputs if _lease_of(leases, f) != ("done", agent_name, f.lease_epoch)]
    if unfinished:
        raise Conflict(
            f"inputs from allocations this agent has not completed under the lease that produced "
            f"them: {', '.join(unfinished[:5])}",
            lfn=unfinished[0],
        )
    total = sum(int(f.events) for f in inputs)
    if total != merged.events:
        raise InvalidInput(
            f"merged file {merged.lfn} holds {merged.events} events but its inputs hold {total}",
            errors=[{"path": "files.events", "message": f"expected {total}"}],
        )


def _lease_of(leases: dict[int, sa.Row[Any]], f: sa.Row[Any]) -> tuple[str, str, int] | None:
    row = leases.get(int(f.allocation_id))
    return None if row is None else (str(row.state), str(row.agent), int(row.lease_epoch))


def close_if_merged(conn: sa.Connection, request_id: int, actor: str, now: float) -> str:
    """Close a completed request once all its output is merged; a failed processing request
    too, once an operator decided on every run with a failed file (`runs`)."""
    request = q.get_request(conn, request_id, lock=True)
    assert request is not None
    if request.state not in (RequestState.COMPLETED, RequestState.FAILED):
        return str(request.state)  # still running: its unmerged files need not be counted
    if q.has_valid_unmerged(conn, request_id):
        return str(request.state)
    if runs.attention_needed(conn, request_id, now):
        return str(request.state)
    if request.state == RequestState.COMPLETED:
        why = "all output merged"
    elif request.state == RequestState.FAILED and runs.failures_given_up(conn, request_id, now):
        why = "all output merged; every failed file given up by an operator"
    else:
        return str(request.state)
    lifecycle.transition(conn, request_id, request.state, RequestState.CLOSED, actor, why, now)
    return RequestState.CLOSED.value
