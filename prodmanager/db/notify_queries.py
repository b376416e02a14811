"""Every SQL statement of notifications (outbox, deliveries, attempts) and of the scans that find
requests needing attention. Composed by `prodmanager.notify` inside `Database.transaction`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodmanager.db.schema import (
    allocation,
    delivery,
    delivery_attempt,
    file,
    notification,
    request,
)

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"  # the retry schedule is used up
GONE = "gone"  # the endpoint answered 410: never again
SUPPRESSED = "suppressed"  # the same content went to the same target within the repeat window
DELIVERY_STATES = (PENDING, DELIVERED, FAILED, GONE, SUPPRESSED)

# --- outbox -------------------------------------------------------------------------------------


def cause_recorded(conn: sa.Connection, cause: str) -> bool:
    return (
        conn.execute(sa.select(notification.c.id).where(notification.c.cause == cause)).first()
        is not None
    )


def insert_notification(
    conn: sa.Connection, request_id: int, event: str, cause: str, facts: str, now: float
) -> int:
    result = conn.execute(
        notification.insert().values(
            request_id=request_id, event=event, cause=cause, facts=facts, created_at=now
        )
    )
    return int(result.inserted_primary_key[0])


def facts_of(conn: sa.Connection, notification_id: int) -> str:
    return str(
        conn.execute(
            sa.select(notification.c.facts).where(notification.c.id == notification_id)
        ).scalar_one()
    )


def unexpanded(conn: sa.Connection, limit: int) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(notification)
        .where(notification.c.expanded_at.is_(None))
        .order_by(notification.c.id)
        .limit(limit)
    ).all()


def mark_expanded(conn: sa.Connection, notification_id: int, now: float) -> bool:
    """Claim a notification for fan-out; False when another sender already did it."""
    return bool(
        conn.execute(
            notification.update()
            .where(notification.c.id == notification_id, notification.c.expanded_at.is_(None))
            .values(expanded_at=now)
        ).rowcount
    )


def recently_sent(
    conn: sa.Connection, target_sha: str, content_sha: str, since: float
) -> bool:
    """The same content already went (or is going) to the same target since `since`."""
    return (
        conn.execute(
            sa.select(delivery.c.id)
            .where(
                delivery.c.target_sha256 == target_sha,
                delivery.c.content_sha256 == content_sha,
                delivery.c.created_at >= since,
                delivery.c.state != SUPPRESSED,
            )
            .limit(1)
        ).first()
        is not None
    )


def insert_delivery(conn: sa.Connection, **values: Any) -> None:
    conn.execute(delivery.insert().values(**values))


# --- deliveries ---------------------------------------------------------------------------------


def due_deliveries(conn: sa.Connection, now: float, limit: int) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(delivery)
        .where(delivery.c.state == PENDING, delivery.c.next_attempt_at <= now)
        .order_by(delivery.c.next_attempt_at)
        .limit(limit)
    ).all()


def claim_delivery(conn: sa.Connection, row: sa.Row[Any], until: float) -> bool:
    """Hold a due delivery until `until` so that no other sender takes it meanwhile; a sender
    killed while holding it only delays it to `until`."""
    return bool(
        conn.execute(
            delivery.update()
            .where(
                delivery.c.id == row.id,
                delivery.c.state == PENDING,
                delivery.c.next_attempt_at == row.next_attempt_at,
            )
            .values(next_attempt_at=until)
        ).rowcount
    )


def record_attempt(
    conn: sa.Connection,
    delivery_id: int,
    now: float,
    ok: bool,
    status: int | None,
    error: str | None,
    duration_s: float,
    state: str,
    next_attempt_at: float,
) -> None:
    """The outcome of one attempt, and the delivery's new state (counted once per attempt)."""
    conn.execute(
        delivery_attempt.insert().values(
            delivery_id=delivery_id, at=now, ok=ok, status=status, error=error, duration_s=duration_s
        )
    )
    conn.execute(
        delivery.update()
        .where(delivery.c.id == delivery_id, delivery.c.state == PENDING)
        .values(
            state=state,
            attempts=delivery.c.attempts + 1,
            next_attempt_at=next_attempt_at,
            last_error=error,
            updated_at=now,
        )
    )


def redeliver(conn: sa.Connection, notification_id: int, everything: bool, now: float) -> int:
    """Pending again, from the start of the schedule: failed, gone and suppressed deliveries
    (and delivered ones too with `everything`). Same message id: receivers may deduplicate."""
    states = [FAILED, GONE, SUPPRESSED] + ([DELIVERED] if everything else [])
    return conn.execute(
        delivery.update()
        .where(delivery.c.notification_id == notification_id, delivery.c.state.in_(states))
        .values(state=PENDING, attempts=0, next_attempt_at=now, updated_at=now)
    ).rowcount


# --- reading ------------------------------------------------------------------------------------


def list_notifications(
    conn: sa.Connection, request_id: int | None, event: str | None, limit: int
) -> Sequence[sa.Row[Any]]:
    query = (
        sa.select(notification, request.c.name.label("request_name"), request.c.owner)
        .join(request, request.c.id == notification.c.request_id)
        .order_by(notification.c.id.desc())
        .limit(limit)
    )
    if request_id is not None:
        query = query.where(notification.c.request_id == request_id)
    if event is not None:
        query = query.where(notification.c.event == event)
    return conn.execute(query).all()


def get_notification(conn: sa.Connection, notification_id: int) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(notification, request.c.name.label("request_name"), request.c.owner)
        .join(request, request.c.id == notification.c.request_id)
        .where(notification.c.id == notification_id)
    ).first()


def deliveries_of(conn: sa.Connection, notification_ids: list[int]) -> Sequence[sa.Row[Any]]:
    if not notification_ids:
        return []
    return conn.execute(
        sa.select(delivery)
        .where(delivery.c.notification_id.in_(notification_ids))
        .order_by(delivery.c.id)
    ).all()


def attempts_of(conn: sa.Connection, delivery_ids: list[int]) -> Sequence[sa.Row[Any]]:
    if not delivery_ids:
        return []
    return conn.execute(
        sa.select(delivery_attempt)
        .where(delivery_attempt.c.delivery_id.in_(delivery_ids))
        .order_by(delivery_attempt.c.id)
    ).all()


# --- scans for "needs attention" and facts ----------------------------------------------------


def failures_by_reason(conn: sa.Connection, request_id: int, limit: int = 5) -> list[tuple[str, int]]:
    """Failed allocations of a request grouped by the reason the agent gave, most common first."""
    n = sa.func.count().label("n")
    rows = conn.execute(
        sa.select(allocation.c.reason, n)
        .where(allocation.c.request_id == request_id, allocation.c.state == "failed")
        .group_by(allocation.c.reason)
        .order_by(n.desc())
        .limit(limit)
    ).all()
    return [(str(r.reason or "unknown"), int(r.n)) for r in rows]


def last_progress(conn: sa.Connection, states: Sequence[str]) -> list[tuple[int, float]]:
    """Requests in `states` with the time of their last visible progress: a state change or a
    reported file, whichever is newer."""
    newest_file = (
        sa.select(sa.func.max(file.c.created_at))
        .where(file.c.request_id == request.c.id)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(request.c.id, request.c.updated_at, newest_file.label("file_at")).where(
            request.c.state.in_(list(states))
        )
    ).all()
    return [(int(r.id), max(float(r.updated_at), float(r.file_at or 0))) for r in rows]


def jobs_waiting_for_operator(
    conn: sa.Connection, states: Sequence[str], job_states: Sequence[str]
) -> Sequence[sa.Row[Any]]:
    """Per live request: how many of its open allocations hold jobs that wait for an operator."""
    return conn.execute(
        sa.select(allocation.c.request_id, sa.func.count().label("n"))
        .join(request, request.c.id == allocation.c.request_id)
        .where(
            request.c.state.in_(list(states)),
            allocation.c.state == "open",
            allocation.c.job_state.in_(list(job_states)),
        )
        .group_by(allocation.c.request_id)
    ).all()


# --- metrics ------------------------------------------------------------------------------------


def deliveries_by_state(conn: sa.Connection) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(delivery.c.channel, delivery.c.state, sa.func.count().label("n")).group_by(
            delivery.c.channel, delivery.c.state
        )
    ).all()


def attempts_by_result(conn: sa.Connection) -> Sequence[sa.Row[Any]]:
    return conn.execute(
        sa.select(delivery.c.channel, delivery_attempt.c.ok, sa.func.count().label("n"))
        .join(delivery, delivery.c.id == delivery_attempt.c.delivery_id)
        .group_by(delivery.c.channel, delivery_attempt.c.ok)
    ).all()


def outbox_backlog(conn: sa.Connection) -> sa.Row[Any]:
    return conn.execute(
        sa.select(sa.func.count().label("n"), sa.func.min(notification.c.created_at).label("oldest"))
        .where(notification.c.expanded_at.is_(None))
    ).one()
