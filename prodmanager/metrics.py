"""ProdManager's Prometheus metrics at GET /metrics (any valid token: Prometheus sends one with
`authorization: {credentials_file: ...}`), computed from the database at scrape time by one
collector, so every server process and the notification sender are counted alike."""

from __future__ import annotations

import time
from collections.abc import Iterator

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prodmanager import deps
from prodmanager.db import metrics_queries as mq
from prodmanager.db import notify_queries as nq
from prodmanager.db import queries as q
from prodmanager.db.engine import Database
from prodmanager.notify.sender import STALL_STATES

router = APIRouter(tags=["metrics"])


class ManagerCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.db.read(self._read)

    def _read(self, conn: sa.Connection) -> list[Metric]:
        now = time.time()
        requests = GaugeMetricFamily("prodmanager_requests", "Requests by state.", labels=["state"])
        for r in mq.requests_by_state(conn):
            requests.add_metric([r.state], int(r.n))
        allocations = GaugeMetricFamily(
            "prodmanager_allocations",
            "Allocations by state (open ones as leased or available).",
            labels=["state"],
        )
        for r in mq.allocations_by_state(conn, now):
            allocations.add_metric([r.state], int(r.n))
        held = GaugeMetricFamily(
            "prodmanager_agent_leases_held", "Leases an agent holds.", labels=["agent"]
        )
        seen = GaugeMetricFamily(
            "prodmanager_agent_last_seen_timestamp_seconds",
            "When an agent last called.",
            labels=["agent"],
        )
        for a in q.list_agents(conn, now):
            held.add_metric([a.name], int(a.leases))
            seen.add_metric([a.name], float(a.last_seen))
        stalled = GaugeMetricFamily(
            "prodmanager_request_progress_age_seconds",
            "Longest time an assigned or running request has gone without progress.",
        )
        ages = [now - at for _, at in nq.last_progress(conn, [s.value for s in STALL_STATES])]
        stalled.add_metric([], max(ages, default=0.0))
        return [requests, allocations, held, seen, stalled, *self._notifications(conn, now)]

    def _notifications(self, conn: sa.Connection, now: float) -> list[Metric]:
        deliveries = GaugeMetricFamily(
            "prodmanager_notification_deliveries",
            "Notification deliveries by channel and state.",
            labels=["channel", "state"],
        )
        for r in nq.deliveries_by_state(conn):
            deliveries.add_metric([r.channel, r.state], int(r.n))
        attempts = CounterMetricFamily(
            "prodmanager_notification_attempts",
            "Notification delivery attempts by channel and result (sent or failed).",
            labels=["channel", "result"],
        )
        for r in nq.attempts_by_result(conn):
            attempts.add_metric([r.channel, "sent" if r.ok else "failed"], int(r.n))
        backlog = nq.outbox_backlog(conn)
        pending = GaugeMetricFamily(
            "prodmanager_outbox_pending", "Notifications not yet expanded into deliveries."
        )
        pending.add_metric([], int(backlog.n))
        oldest = GaugeMetricFamily(
            "prodmanager_outbox_oldest_age_seconds", "Age of the oldest unexpanded notification."
        )
        oldest.add_metric([], now - float(backlog.oldest) if backlog.oldest else 0.0)
        return [deliveries, attempts, pending, oldest]


def registry_for(db: Database) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ManagerCollector(db))
    return registry


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(deps.principal)])
def metrics(request: Request) -> Response:
    registry = getattr(request.app.state, "metrics", None)
    if registry is None:
        registry = request.app.state.metrics = registry_for(request.app.state.db)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
