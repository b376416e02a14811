"""Durations measured inside component processes (handler and tick times), in prometheus_client's
multiprocess mode: each process writes its samples to files under `<workdir>/run/metrics`, and
the MetricsExporter sums every file at scrape time, so the histograms cover all components and
survive their restarts (a dead process's file keeps its counts).

Stage-out times come from the job reports JobTracker reads (`ProcessMetrics.staged_out`).

Only histograms are kept this way; everything else is read from the database (`collector`),
because multiprocess mode cannot serve custom collectors or live gauges of dead processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from prodagent.config import AgentConfig

ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGEOUT_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def metrics_dir(config: AgentConfig) -> Path:
    return config.workdir / "run" / "metrics"


def use_dir(path: Path) -> None:
    """Make this process write its samples under `path` (before any metric is created)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)
    values.ValueClass = values.get_value_class()  # chosen at import time otherwise


class ProcessMetrics:
    """The histograms a component process records, labelled with its component."""

    def __init__(self, config: AgentConfig, component: str) -> None:
        use_dir(metrics_dir(config))
        self.component = component
        self.handler = Histogram(
            "prodagent_handler_duration_seconds",
            "Time a component took to handle one message (in its transaction).",
            ["component", "msg_type"],
            buckets=DURATION_BUCKETS_S,
            registry=None,
        )
        self.tick = Histogram(
            "prodagent_tick_duration_seconds",
            "Time one periodic tick of a component took.",
            ["component"],
            buckets=DURATION_BUCKETS_S,
            registry=None,
        )
        self.stageout = Histogram(
            "prodagent_stageout_duration_seconds",
            "Time a job's wrapper took to stage its output out, retries included.",
            buckets=STAGEOUT_BUCKETS_S,
            registry=None,
        )

    def handled(self, msg_type: str, seconds: float) -> None:
        self.handler.labels(self.component, msg_type).observe(seconds)

    def ticked(self, seconds: float) -> None:
        self.tick.labels(self.component).observe(seconds)

    def staged_out(self, seconds: float) -> None:
        """One job's stage-out time, retries included, as JobTracker reads it from the job report."""
        self.stageout.observe(seconds)


def add_process_metrics(registry: CollectorRegistry, config: AgentConfig) -> None:
    path = metrics_dir(config)
    path.mkdir(parents=True, exist_ok=True)
    MultiProcessCollector(registry, path=str(path))
