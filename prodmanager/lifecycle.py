"""Request state changes: checked against the transition table, recorded with who and why.

Every change of `pm_request.state` goes through `transition`, inside the caller's transaction.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from prodmanager.db import queries as q
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
    return True


def settle(conn: sa.Connection, request_id: int, actor: str, now: float) -> str:
    """After allocations finished: lock the request and, if none is open any more, move it to
    completed (or failed when some failed). Returns the request's state afterwards.

    The row lock makes concurrent completions of the last allocations see each other.
    """
    row = q.get_request(conn, request_id, lock=True)
    assert row is not None
    state = row.state
    if state not in (RequestState.ASSIGNED, RequestState.RUNNING, RequestState.PAUSED):
        return str(state)
    counts = q.count_by_state(conn, request_id)
    if counts.get("open", 0):
        return str(state)
    failed = counts.get("failed", 0)
    target = RequestState.FAILED if failed else RequestState.COMPLETED
    reason = f"{failed} allocation(s) failed" if failed else "all allocations done"
    transition(conn, request_id, state, target, actor, reason, now)
    if target == RequestState.COMPLETED and not json.loads(row.spec).get("merge", {}).get(
        "enabled", True
    ):
        transition(conn, request_id, target, RequestState.CLOSED, actor, "merge disabled", now)
        return RequestState.CLOSED.value
    return target.value


def mark_running(conn: sa.Connection, request_id: int, actor: str, now: float) -> None:
    """First progress: assigned -> running (a no-op in any other state)."""
    row = q.get_request(conn, request_id)
    if row is not None and row.state == RequestState.ASSIGNED:
        transition(conn, request_id, row.state, RequestState.RUNNING, actor, "first progress", now)
