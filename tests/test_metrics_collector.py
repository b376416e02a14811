"""The agent's /metrics collector against a real database (SQLite and MariaDB): gauges equal the
tables, counters read the transition table incrementally and never count a row twice, and the
output passes `promtool check metrics`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bench.metrics import AGENT, fill
from prodagent.components.metrics_exporter import build_registry
from prodagent.config import config_from_dict
from prodagent.db import migrate
from prodagent.db.schema import pa_job, pa_job_transition

JOBS = 400


def samples(registry) -> dict[str, dict[tuple, float]]:  # type: ignore[no-untyped-def]
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_collector_matches_the_database_and_counts_incrementally(db_url: str, tmp_path) -> None:
    migrate.upgrade(db_url)
    fill(db_url, JOBS)
    config = config_from_dict({"agent": {"name": AGENT, "workdir": str(tmp_path)},
                               "database": {"url": db_url}})
    registry = build_registry(config)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        truth = Counter(dict(conn.execute(
            sa.select(pa_job.c.state, sa.func.count()).group_by(pa_job.c.state)).all()))
    first = samples(registry)
    by_state: Counter[str] = Counter()
    for labels, v in first["prodagent_jobs"].items():
        by_state[dict(labels)["state"]] += int(v)
    assert by_state == truth
    assert sum(first["prodagent_job_transitions_total"].values()) == 3 * JOBS
    failures_before = sum(first["prodagent_job_failures_total"].values())
    assert first["prodagent_dead_letters"][(("component", "ErrorHandler"),)] == 20
    assert first["prodagent_site_free_slots"][(("site", "T2_SITE_0"),)] == 150  # 500 - 300 - 50

    with engine.begin() as conn:  # five more failures of job 1
        conn.execute(pa_job_transition.insert(), [
            {"job_id": 1, "from_state": "running", "to_state": "jobfailed", "at": time.time(), "retry": k}
            for k in range(5)])
    second = samples(registry)
    assert sum(second["prodagent_job_transitions_total"].values()) == 3 * JOBS + 5
    assert sum(second["prodagent_job_failures_total"].values()) == failures_before + 5
    third = samples(registry)  # nothing new: nothing counted twice
    assert third["prodagent_job_transitions_total"] == second["prodagent_job_transitions_total"]
    engine.dispose()

    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed: scripts/prometheus.sh installs it")
    out = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(registry),
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_stage_out_times_reach_the_exporter(tmp_path) -> None:
    """JobTracker's process records each report's stage-out time; the exporter sums every
    process's samples (multiprocess mode), so a fresh process stands in for JobTracker."""
    code = (
        "from prodagent.config import config_from_dict\n"
        "from prodagent.metrics.process import ProcessMetrics\n"
        f"config = config_from_dict({{'agent': {{'name': 'a', 'workdir': {str(tmp_path)!r}}}}})\n"
        "metrics = ProcessMetrics(config, 'JobTracker')\n"
        "metrics.staged_out(1.5)\n"
        "metrics.staged_out(42.0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path / "run" / "metrics"))
    text = generate_latest(registry).decode()
    assert "prodagent_stageout_duration_seconds_count 2.0" in text
    assert "prodagent_stageout_duration_seconds_sum 43.5" in text
    assert 'prodagent_stageout_duration_seconds_bucket{le="30.0"} 1.0' in text
