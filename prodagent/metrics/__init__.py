"""Prometheus metrics of an agent: gauges and counters derived from the database at scrape time
(`collector`, SQL in `queries`), handler and tick durations measured in each component process
(`process`, prometheus_client's multiprocess mode), served at /metrics by the MetricsExporter
component (`prodagent.components.metrics_exporter`)."""
