"""The operator's view of notifications: list, show (deliveries and every attempt), redeliver.
Shared by the API routes and the `prodmanager notifications` commands."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from pydantic import Field

from prodmanager.auth import Principal, require_role
from prodmanager.db import notify_queries as nq
from prodmanager.db.engine import Database
from prodmanager.errors import NotFound
from prodmanager.models import Role, Wire


class Attempt(Wire):
    at: float
    ok: bool
    status: int | None
    error: str | None
    duration_s: float


class Delivery(Wire):
    id: int
    channel: str
    target: str
    message_id: str
    state: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    attempt_log: list[Attempt] = Field(default_factory=list)


class NotificationSummary(Wire):
    id: int
    request_id: int
    request_name: str
    owner: str
    event: str
    why: str
    created_at: float
    deliveries: dict[str, int]  # by state


class NotificationDetail(NotificationSummary):
    facts: dict[str, Any]
    delivery_list: list[Delivery]


class NotificationService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(
        self,
        principal: Principal,
        request_id: int | None = None,
        event: str | None = None,
        limit: int = 100,
    ) -> list[NotificationSummary]:
        require_role(principal, Role.OPERATOR)

        def work(conn: sa.Connection) -> list[NotificationSummary]:
            rows = nq.list_notifications(conn, request_id, event, limit)
            deliveries = nq.deliveries_of(conn, [int(r.id) for r in rows])
            return [_summary(r, [d for d in deliveries if d.notification_id == r.id]) for r in rows]

        return self.db.read(work)

    def show(self, principal: Principal, notification_id: int) -> NotificationDetail:
        require_role(principal, Role.OPERATOR)

        def work(conn: sa.Connection) -> NotificationDetail:
            row = nq.get_notification(conn, notification_id)
            if row is None:
                raise NotFound(f"no notification {notification_id}")
            deliveries = nq.deliveries_of(conn, [notification_id])
            attempts = nq.attempts_of(conn, [int(d.id) for d in deliveries])
            listed = [
                Delivery(
                    id=d.id,
                    channel=d.channel,
                    target=d.target,
                    message_id=d.message_id,
                    state=d.state,
                    attempts=d.attempts,
                    next_attempt_at=d.next_attempt_at if d.state == nq.PENDING else None,
                    last_error=d.last_error,
                    attempt_log=[
                        Attempt(
                            at=a.at, ok=bool(a.ok), status=a.status, error=a.error,
                            duration_s=a.duration_s,
                        )
                        for a in attempts
                        if a.delivery_id == d.id
                    ],
                )
                for d in deliveries
            ]
            base = _summary(row, deliveries).model_dump()
            return NotificationDetail(**base, facts=json.loads(row.facts), delivery_list=listed)

        return self.db.read(work)

    def redeliver(
        self, principal: Principal, notification_id: int, everything: bool = False
    ) -> NotificationDetail:
        """Deliveries that did not get through (with `everything`, all) are sent again."""
        require_role(principal, Role.OPERATOR)

        def work(conn: sa.Connection) -> int:
            if nq.get_notification(conn, notification_id) is None:
                raise NotFound(f"no notification {notification_id}")
            return nq.redeliver(conn, notification_id, everything, time.time())

        self.db.transaction(work)
        return self.show(principal, notification_id)


def _summary(row: sa.Row[Any], deliveries: Any) -> NotificationSummary:
    states: dict[str, int] = {}
    for d in deliveries:
        states[d.state] = states.get(d.state, 0) + 1
    return NotificationSummary(
        id=row.id,
        request_id=row.request_id,
        request_name=row.request_name,
        owner=row.owner,
        event=row.event,
        why=json.loads(row.facts).get("why", ""),
        created_at=row.created_at,
        deliveries=states,
    )
