"""Writing the outbox: a notification row in the same transaction as the state change (or the
scan) that causes it, with a snapshot of the facts a person needs to act on it.

A crash either loses the state change and its notification together or keeps both; the cause
(`pm_notification.cause`) is unique, so a repeated scan or transaction adds nothing twice.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from prodmanager.counters import counters_for
from prodmanager.db import notify_queries as nq
from prodmanager.db import queries as q
from prodmanager.states import RequestState

# Request states that notify, and how. Paused by the system (not by a person) needs attention.
STATE_EVENTS = {
    RequestState.COMPLETED: "completed",
    RequestState.FAILED: "failed",
    RequestState.ABORTED: "aborted",
}
SYSTEM_PAUSE_EVENT = "attention"


def event_for_transition(target: str, actor: str, system_actor: str) -> str | None:
    if target == RequestState.PAUSED:
        return SYSTEM_PAUSE_EVENT if actor == system_actor else None
    return STATE_EVENTS.get(RequestState(target))


def record(
    conn: sa.Connection,
    request_id: int,
    event: str,
    cause: str,
    why: str,
    now: float,
    act: str | None = None,
) -> int | None:
    """Add a notification for `request_id` unless `cause` was recorded before; its id or None."""
    cause = cause[:200]
    if nq.cause_recorded(conn, cause):
        return None
    row = q.get_request(conn, request_id)
    if row is None:
        return None
    facts = json.dumps(_facts(conn, row, event, why, act, now), sort_keys=True)
    return nq.insert_notification(conn, request_id, event, cause, facts, now)


def _facts(
    conn: sa.Connection, row: sa.Row[Any], event: str, why: str, act: str | None, now: float
) -> dict[str, Any]:
    spec = json.loads(row.spec)
    counters = counters_for(conn, [row], now)[int(row.id)]
    return {
        "request": {"id": int(row.id), "name": row.name, "owner": row.owner, "kind": row.kind},
        "state": row.state,
        "event": event,
        "why": why[:500],
        "act": act or _default_action(event, int(row.id), str(row.state)),
        "at": now,
        "counters": counters.model_dump(mode="json"),
        "output": spec.get("output", {}),
        "failures": nq.failures_by_reason(conn, int(row.id)),
        "notify": spec.get("notify", {}),
    }


def _default_action(event: str, request_id: int, state: str) -> str:
    if event == "failed":
        return f"prodrequest clone {request_id}   # resubmit the failed part"
    if event == "attention" and state == RequestState.PAUSED:
        return f"prodrequest resume {request_id}   # once the cause is fixed"
    if event == "attention":
        return f"prodrequest show {request_id}   # then pause, abort or fix the agents"
    return f"prodrequest show {request_id}"
