"""MetricsExporter: serves the agent's Prometheus metrics at http://<host>:<port>/metrics.

A component of its own (enable it in `components.enabled`), so the supervisor keeps it running
like any other. A scrape reads the database (`prodagent.metrics.collector`) and the duration
histograms the component processes write (`prodagent.metrics.process`); it handles no messages.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from pydantic import BaseModel, ConfigDict, Field

from prodagent.metrics.collector import AgentCollector, read_engine
from prodagent.metrics.process import add_process_metrics
from prodagent.runtime.component import Component


class MetricsExporterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=1, le=65535)


def build_registry(config: Any, catch_up: bool = True) -> CollectorRegistry:
    """Everything an agent's /metrics serves (also used by the benchmark and the tests); with
    `catch_up`, the job history is counted before it returns, not at the first scrape."""
    registry = CollectorRegistry(auto_describe=False)
    collector = AgentCollector(
        read_engine(config.db_url), config.agent.name, config.messaging.stale_after_s
    )
    if catch_up:
        collector.catch_up()
    registry.register(collector)
    add_process_metrics(registry, config)
    return registry


class MetricsExporter(Component):
    name = "MetricsExporter"
    Settings = MetricsExporterSettings

    def setup(self) -> None:
        registry = build_registry(self.config)
        self.server, self.thread = start_http_server(
            self.settings.port, addr=self.settings.host, registry=registry
        )
        self.log.info("serving metrics on http://%s:%d/metrics", self.settings.host, self.settings.port)

    def teardown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
