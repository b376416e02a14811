"""The agent's one custom collector: every gauge and counter read from the database at scrape
time, so the numbers are the database's, whichever component process changed it.

Counters survive the separate component processes and their restarts because they are derived
from tables that only grow: messages handled are the sum of `ms_process.handled` over every
process row; job transitions, failures (by site and error class) and the wall-time histogram
come from `pa_job_transition` (with the job's site, error class and wall time). That table is
read incrementally (rows past the last id seen), so a scrape stays cheap however long it grows;
the exporter counts it from the start when it starts, so its counters never go backwards except
at its own restart, which Prometheus' rate() handles as a counter reset.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from prodagent.batch.base import SiteSlots
from prodagent.db.engine import is_sqlite, make_engine
from prodagent.jobs.states import FAILED, SUCCESS
from prodagent.metrics import queries as mq

WALL_BUCKETS_S = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)


class Buckets:
    """A histogram kept by the collector itself (fed from the database, not by observers)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        names = [str(b) for b in self.bounds] + ["+Inf"]
        return list(zip(names, itertools.accumulate(self.counts), strict=True))


def read_engine(url: str) -> sa.Engine:
    """An engine for scrapes. On SQLite its transactions are deferred (a snapshot that never
    blocks a writer), unlike the agent's own, which take the write lock up front."""
    if not is_sqlite(url):
        return make_engine(url, pool_size=2)

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is ours
        dbapi_conn.execute("PRAGMA busy_timeout=30000")

    engine = sa.create_engine(url, connect_args={"check_same_thread": False})
    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    return engine


class AgentCollector(Collector):
    def __init__(self, engine: sa.Engine, agent: str, stale_after_s: float) -> None:
        self.engine = engine
        self.agent = agent
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._last_transition = 0
        self._transitions: Counter[tuple[str, str]] = Counter()
        self._failures: Counter[tuple[str, str]] = Counter()
        self._successes: Counter[str] = Counter()
        self._wall = Buckets(WALL_BUCKETS_S)

    def describe(self) -> list[Metric]:
        return []  # no database read when the collector is registered

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = time.time()
        with self.engine.connect() as conn, conn.begin():
            yield from self._jobs(conn)
            yield from self._messages(conn, now)
            yield from self._sites(conn)
            yield from self._counters(conn)
        took = GaugeMetricFamily(
            "prodagent_metrics_collect_seconds", "Time this scrape spent reading the database."
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _jobs(self, conn: sa.Connection) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "prodagent_jobs", "Jobs by state, site and type.", labels=["state", "site", "job_type"]
        )
        for r in mq.jobs_by_state(conn, self.agent):
            jobs.add_metric([r.state, r.site or "", r.job_type], int(r.n))
        yield jobs
        allocations = GaugeMetricFamily(
            "prodagent_allocations", "Allocations held from ProdManager, by state.", labels=["state"]
        )
        held = 0
        for r in mq.allocations_by_state(conn, self.agent, time.time()):
            allocations.add_metric([r.state], int(r.n))
            held += int(r.leased or 0)
        yield allocations
        leases = GaugeMetricFamily("prodagent_leases_held", "Allocation leases currently held.")
        leases.add_metric([], held)
        yield leases

    def _messages(self, conn: sa.Connection, now: float) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "prodagent_messages_pending", "Messages waiting for a component.", labels=["component"]
        )
        oldest = GaugeMetricFamily(
            "prodagent_oldest_message_age_seconds",
            "Age of the oldest message waiting for a component.",
            labels=["component"],
        )
        for r in mq.messages_pending(conn, self.agent):
            pending.add_metric([r.component], int(r.n))
            oldest.add_metric([r.component], max(0.0, now - float(r.oldest)))
        dead = GaugeMetricFamily(
            "prodagent_dead_letters", "Messages given up on, by component.", labels=["component"]
        )
        for r in mq.dead_letters(conn, self.agent):
            dead.add_metric([r.component], int(r.n))
        up = GaugeMetricFamily(
            "prodagent_component_up",
            "1 when a process of the component beats its heart in time, else 0.",
            labels=["component"],
        )
        beat = GaugeMetricFamily(
            "prodagent_component_heartbeat_timestamp_seconds",
            "Newest heartbeat of a running process of the component.",
            labels=["component"],
        )
        handled = CounterMetricFamily(
            "prodagent_messages_handled",
            "Messages handled by all processes of the component, ever.",
            labels=["component"],
        )
        for r in mq.processes(conn, self.agent):
            alive = r.heartbeat_at is not None and now - float(r.heartbeat_at) < self.stale_after_s
            up.add_metric([r.component], 1.0 if alive else 0.0)
            if r.heartbeat_at is not None:
                beat.add_metric([r.component], float(r.heartbeat_at))
            handled.add_metric([r.component], int(r.handled or 0))
        yield from (pending, oldest, dead, up, beat, handled)

    def _sites(self, conn: sa.Connection) -> Iterator[Metric]:
        names = {
            "slots": "Batch slots of the site.",
            "free_slots": "Slots of the site neither running nor queueing a job.",
            "running_jobs": "Jobs running at the site, as the batch system says.",
            "queued_jobs": "Jobs queued at the site, as the batch system says.",
        }
        families = {
            k: GaugeMetricFamily(f"prodagent_site_{k}", doc, labels=["site"])
            for k, doc in names.items()
        }
        for r in mq.sites(conn, self.agent):
            families["slots"].add_metric([r.site], int(r.slots))
            slots = SiteSlots(r.site, int(r.slots), int(r.running), int(r.queued))
            families["free_slots"].add_metric([r.site], slots.free)
            families["running_jobs"].add_metric([r.site], int(r.running))
            families["queued_jobs"].add_metric([r.site], int(r.queued))
        yield from families.values()

    def catch_up(self) -> None:
        """Count the transition table up to now; the exporter does it before serving, so that
        no scrape has to read a long history."""
        with self.engine.connect() as conn, conn.begin():
            self._catch_up(conn)

    def _catch_up(self, conn: sa.Connection) -> None:
        with self._lock:
            rows, newest = mq.transitions_since(conn, self.agent, self._last_transition)
            for r in rows:
                self._transitions[(r.from_state or "", r.to_state)] += int(r.n)
                if r.to_state in FAILED:
                    self._failures[(r.site or "", r.error_class or "unknown")] += int(r.n)
                elif r.to_state == SUCCESS:
                    self._successes[r.site or ""] += int(r.n)
            if newest > self._last_transition:
                for wall in mq.wall_times(conn, self.agent, self._last_transition, newest):
                    self._wall.observe(wall)
            self._last_transition = newest

    def _counters(self, conn: sa.Connection) -> Iterator[Metric]:
        self._catch_up(conn)
        with self._lock:
            transitions, failures = dict(self._transitions), dict(self._failures)
            successes = dict(self._successes)
            wall_buckets, wall_sum = self._wall.cumulative(), self._wall.total
        family = CounterMetricFamily(
            "prodagent_job_transitions", "Job state transitions.", labels=["from_state", "to_state"]
        )
        for key, n in sorted(transitions.items()):
            family.add_metric(list(key), n)
        yield family
        family = CounterMetricFamily(
            "prodagent_job_failures", "Job failures by site and error class.",
            labels=["site", "error_class"],
        )
        for key, n in sorted(failures.items()):
            family.add_metric(list(key), n)
        yield family
        family = CounterMetricFamily(
            "prodagent_job_successes", "Job attempts that succeeded, by site.", labels=["site"]
        )
        for site, n in sorted(successes.items()):
            family.add_metric([site], n)
        yield family
        family = HistogramMetricFamily(
            "prodagent_job_wall_seconds", "Wall time of job attempts that ran to their end."
        )
        family.add_metric([], wall_buckets, wall_sum)
        yield family
