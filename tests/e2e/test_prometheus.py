"""A real Prometheus (Debian's `prometheus`) scrapes a running agent (its MetricsExporter) and a
running ProdManager during a production; its jobs-by-state series must match the agent's
database. `promtool check metrics` on both /metrics, `promtool check rules` on the shipped rules.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from prodagent.config import DEFAULT_COMPONENTS
from prodagent.db.schema import pa_job
from prodagent.demo.stack import AgentProcesses, Manager, free_port, write_agent_config

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "etc" / "monitoring" / "prometheus-alerts.yml"
JOBS = 6
EMULATOR = {
    # Jobs of 2 s with 1 s scrapes: several scrapes see them live.
    "seed": 5, "duration": {"distribution": "fixed", "value_s": 2.0},
    "outcomes": [{"probability": 0.2, "exit_code": 1}],
    "slots": 3, "nodes": 1, "output_bytes": 1024,
}

needs_prometheus = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("promtool")),
    reason="prometheus/promtool not installed: scripts/prometheus.sh installs them (Debian package)",
)


def workflow(name: str) -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "ecm": 13000.0}},
        "events": {"total": 10 * JOBS, "per_job": 10},
        "output": {"dataset": f"/Metrics/{name}/GEN", "tier": "GEN"},
        "merge": {"enabled": True, "min_size_bytes": 1, "max_size_bytes": 1_000_000,
                  "max_events": 30, "max_wait_s": 1},
        "retry": {"max_retries": 10, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 500, "time_s": 300},
    }


SUFFIXES = {"counter": ("", "_total"), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def sample_names(text: str) -> set[str]:
    """Every series name a /metrics text declares (families without samples included)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def referenced(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:prodagent|prodmanager)_[a-z_]+\b", expr))


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in (ROOT / "etc" / "monitoring").glob("grafana-*.json"):
        exprs += [t["expr"] for p in json.loads(path.read_text())["panels"] for t in p["targets"]]
    assert exprs
    return exprs


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)


@needs_prometheus
def test_shipped_alert_rules_pass_promtool() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def start_prometheus(tmp: Path, agent_port: int, manager: Manager, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (tmp / "token").write_text(token)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "prodagent", "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]},
            {"job_name": "prodmanager", "authorization": {"credentials_file": str(tmp / "token")},
             "static_configs": [{"targets": [f"127.0.0.1:{manager.port}"]}]},
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # Until its storage is open, Prometheus answers queries with 503 "Service Unavailable".
    deadline = time.monotonic() + 60
    while not _ready(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = (tmp / "prometheus.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"Prometheus not ready after 60 s (exit {proc.poll()}):\n{tail}")
        time.sleep(0.2)
    return proc, url


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    try:
        answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    except httpx.HTTPError:
        return []
    if not answer.is_success:  # not an answer yet (503 while Prometheus opens its storage)
        return []
    body = answer.json()
    return body["data"]["result"] if body.get("status") == "success" else []


def value(prom: str, expr: str, timeout: float = 20.0) -> float:
    """The single value of `expr`, once Prometheus has one (scrapes run every second)."""
    deadline = time.monotonic() + timeout
    while not (found := query(prom, expr)):
        assert time.monotonic() < deadline, f"no value for {expr}"
        time.sleep(0.5)
    return float(found[0]["value"][1])


@needs_prometheus
def test_prometheus_sees_what_the_database_holds(tmp_path: Path) -> None:
    manager = Manager(tmp_path / "pm", f"sqlite:///{tmp_path / 'pm' / 'pm.db'}", lease_s=120)
    manager.start()
    metrics_port = free_port()
    config = write_agent_config(
        tmp_path / "agent.yaml", tmp_path / "agent", manager, db_url=f"sqlite:///{tmp_path / 'agent.db'}",
        batch={"plugin": "emulator", "options": EMULATOR},
        settings={"MetricsExporter": {"port": metrics_port}},
    )
    raw = yaml.safe_load(config.read_text())
    raw["components"]["enabled"] = [*DEFAULT_COMPONENTS, "MetricsExporter"]
    config.write_text(yaml.safe_dump(raw))
    agent = AgentProcesses(config)
    engine = sa.create_engine(agent.config.db_url)
    prom_proc = None
    try:
        agent.start()
        client = manager.client("requester", "tester")
        prom_proc, prom = start_prometheus(tmp_path, metrics_port, manager, manager.token("operator", "prom"))
        # Submit only once Prometheus scrapes the agent, so that it can see jobs in flight.
        assert value(prom, 'up{job="prodagent"}', timeout=60) == 1
        request = client.submit(workflow("metrics")).request
        live_expr = 'sum(prodagent_jobs{state=~"created|submitted|running"})'
        most_live = 0.0
        deadline = time.monotonic() + 180
        while client.get(request.id).state != "closed":
            assert time.monotonic() < deadline, f"production not done: {client.get(request.id)}"
            most_live = max([most_live, *(float(r["value"][1]) for r in query(prom, live_expr))])
            time.sleep(0.5)

        def database_jobs() -> dict[str, int]:
            with engine.connect() as conn:
                return dict(Counter(conn.execute(sa.select(pa_job.c.state)).scalars()))

        def prometheus_jobs() -> dict[str, int]:
            found = query(prom, "sum by (state) (prodagent_jobs)")
            return {r["metric"]["state"]: int(float(r["value"][1])) for r in found if float(r["value"][1])}

        deadline = time.monotonic() + 30
        while (seen := prometheus_jobs()) != (truth := database_jobs()):
            assert time.monotonic() < deadline, f"Prometheus {seen} != database {truth}"
            time.sleep(0.5)
        assert sum(truth.values()) >= JOBS
        # It scraped during the production, not only after: jobs were seen in flight.
        assert most_live > 0, "Prometheus never saw a job created, submitted or running"
        assert value(prom, 'prodmanager_requests{state="closed"}') == 1
        assert value(prom, "sum(prodagent_job_successes_total)") >= JOBS
        # Component histograms (multiprocess files) reach the exporter.
        assert value(prom, 'sum(prodagent_handler_duration_seconds_count{component="JobCreator"})') > 0
        # What both /metrics serve passes promtool's lint.
        agent_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        manager_text = httpx.get(f"{manager.url}/metrics", timeout=10,
                                 headers={"Authorization": f"Bearer {manager.token('operator', 'prom')}"}).text
        for text in (agent_text, manager_text):
            out = promtool_check_metrics(text)
            assert out.returncode == 0, out.stdout + out.stderr
        # Every series the dashboards and alert rules name is served, and every dashboard query
        # is valid PromQL to this Prometheus.
        served = sample_names(agent_text) | sample_names(manager_text)
        for expr in dashboard_exprs():
            assert referenced(expr) <= served, f"{expr}: {referenced(expr) - served} not served"
            body = httpx.get(f"{prom}/api/v1/query", params={"query": expr.replace("$instance", ".*")},
                             timeout=5).json()
            assert body["status"] == "success", (expr, body)
        assert referenced(RULES.read_text()) <= served
    finally:
        if prom_proc is not None:
            prom_proc.terminate()
            prom_proc.wait(20)
        agent.stop()
        manager.stop()
        engine.dispose()
