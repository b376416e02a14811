"""Request state changes: checked against the transition table, recorded with who and why.

Every change of `pm_request.state` goes through `transition`, inside the caller's transaction;
a change that notifies (completed, failed, aborted, paused by the system) writes its outbox row
in that same transaction.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from prodmanager import chain
from prodmanager.db import queries as q
from prodmanager.notify import outbox
from prodmanager.states import RequestState, check_request_transition

SYSTEM = "prodmanager"


def transition(
    conn: sa.Connection,
    request_id: int,
    current: str,
    target: RequestState,
    actor: str,
    reason: str,
    now: float,
) -> bool:
    """Move the request from `current` to `target`; False if it was no longer in `current`.

    Raises IllegalTransition when the table forbids the change.
    """
    check_request_transition(current, target)
    if not q.change_request_state(conn, request_id, current, target.value, now):
        return False
    q.insert_history(conn, request_id, current, target.value, actor, reason, now)
    event = outbox.event_for_transition(target, actor, SYSTEM)
    if event is not None:
        cause = f"state:{request_id}:{current}>{target.value}:{now!r}"
        outbox.record(conn, request_id, event, cause, f"{target.value}: {reason}", now)
    return True


def settle(conn: sa.Connection, request_id: int, actor: str, now: float) -> str | None:
    """If no allocation of the request is open any more, move it to completed (or failed when
    some failed). Returns the new state, or None when nothing changed.

    The cheap existence check comes first; the request row is locked only when it may finish.
    """
    if q.has_open(conn, request_id):
        return None
    row = q.get_request(conn, request_id, lock=True)
    assert row is not None
    if row.state not in (RequestState.ASSIGNED, RequestState.RUNNING, RequestState.PAUSED):
        return None
    if q.has_open(conn, request_id):
        return None
    pending, ended = chain.producer_pending(conn, json.loads(row.spec))
    if pending:
        return None  # its input request may still hand on files
    failed = q.count_by_state(conn, request_id).get("failed", 0)
    target = RequestState.FAILED if failed else RequestState.COMPLETED
    reason = f"{failed} allocation(s) failed" if failed else "all allocations done"
    if ended:
        reason += f"; {ended}"
    transition(conn, request_id, row.state, target, actor, reason, now)
    if target == RequestState.COMPLETED and not json.loads(row.spec).get("merge", {}).get(
        "enabled", True
    ):
        transition(conn, request_id, target, RequestState.CLOSED, actor, "merge disabled", now)
        return RequestState.CLOSED.value
    return target.value


def mark_running(conn: sa.Connection, request_id: int, actor: str, now: float) -> bool:
    """First progress: assigned -> running. True when the request was already past assigned
    before this call (it never goes back, except through paused, which resume handles), so a
    caller may remember it; False when this call made the change (not committed yet) or none."""
    row = q.get_request(conn, request_id)
    if row is None:
        return False
    if row.state == RequestState.ASSIGNED:
        transition(conn, request_id, row.state, RequestState.RUNNING, actor, "first progress", now)
        return False
    return row.state in (
        RequestState.RUNNING,
        RequestState.COMPLETED,
        RequestState.FAILED,
        RequestState.CLOSED,
    )
