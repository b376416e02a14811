"""Time to serve an agent's /metrics with many jobs in the database (target: under 200 ms).

    .venv/bin/python -m bench.metrics [--jobs 100000] [--runs 7] [--backend sqlite|mariadb] [--json F]

Fills a fresh agent database with `--jobs` jobs spread over states, sites and types, three
transitions per job, finished jobs with wall times, allocations, sites, messages, processes and
dead letters; builds the MetricsExporter's registry (which counts the transition history once,
timed apart as the exporter's start-up), serves it over real HTTP, and times GET /metrics: the
first scrape and the median of the following ones. Prints the figures, optionally JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest, start_http_server

from bench.db import create_database, drop_database
from prodagent.components.metrics_exporter import build_registry
from prodagent.config import config_from_dict
from prodagent.db import migrate
from prodagent.db.engine import make_engine
from prodagent.db.schema import (
    ms_dead_letter,
    ms_message,
    ms_process,
    pa_allocation,
    pa_job,
    pa_job_transition,
    pa_site,
)

AGENT = "bench"
SITES = [f"T2_SITE_{i}" for i in range(8)]
STATES = ["created", "submitted", "running", "success", "cleaned", "jobfailed", "cooloff",
          "paused", "exhausted", "killed"]
CHUNK = 5000


def fill(url: str, jobs: int) -> None:
    engine = make_engine(url)
    rnd = random.Random(13)
    now = time.time()
    with engine.begin() as conn:
        for start in range(0, jobs, CHUNK):
            rows, moves = [], []
            for i in range(start, min(start + CHUNK, jobs)):
                state = rnd.choice(STATES)
                done = state in ("success", "cleaned", "jobfailed", "exhausted")
                rows.append({
                    "id": i + 1, "agent": AGENT, "name": f"job-{i}", "state": state,
                    "job_type": "merge" if i % 20 == 0 else "production",
                    "site": rnd.choice(SITES), "workdir": f"/w/{i}", "request_id": str(i % 50),
                    "allocation_id": f"a{i // 4}", "created_at": now, "updated_at": now,
                    "wall_s": rnd.uniform(30, 20000) if done else None,
                    "error_class": "PayloadError" if state in ("jobfailed", "exhausted") else None,
                })
                path = [("created", "submitted"), ("submitted", "running"), ("running", state)]
                moves += [{"job_id": i + 1, "from_state": a, "to_state": b, "at": now, "retry": 0}
                          for a, b in path]
            conn.execute(pa_job.insert(), rows)
            conn.execute(pa_job_transition.insert(), moves)
        conn.execute(pa_allocation.insert(), [
            {"id": f"a{i}", "agent": AGENT, "request_id": str(i % 50), "request_name": f"r{i % 50}",
             "lease_token": "t", "lease_expires_at": now + 600, "workflow": "{}",
             "state": rnd.choice(["acquired", "active", "done"]), "acquired_at": now,
             "updated_at": now} for i in range(jobs // 4)])
        conn.execute(pa_site.insert(), [
            {"agent": AGENT, "site": s, "slots": 500, "running": 300, "queued": 50, "updated_at": now}
            for s in SITES])
        conn.execute(ms_message.insert(), [
            {"agent": AGENT, "component": c, "msg_type": "JobSubmit", "payload": "{}",
             "created_at": now - rnd.uniform(0, 60), "available_at": now}
            for c in ("JobSubmitter", "JobTracker", "ErrorHandler") for _ in range(300)])
        conn.execute(ms_dead_letter.insert(), [
            {"id": i + 1, "agent": AGENT, "component": "ErrorHandler", "msg_type": "JobFailed",
             "payload": "{}", "priority": 0, "created_at": now, "failed_at": now, "deliveries": 5}
            for i in range(20)])
        conn.execute(ms_process.insert(), [
            {"agent": AGENT, "component": c, "host": "h", "pid": 100 + k, "started_at": now,
             "heartbeat_at": now, "handled": 1000 * k}
            for k, c in enumerate(["ProdMgrInterface", "JobCreator", "JobSubmitter", "JobTracker",
                                   "ErrorHandler", "MergeSensor", "Cleanup"])])
    engine.dispose()


def measure(url: str, workdir: Path, runs: int) -> dict[str, Any]:
    config = config_from_dict({"agent": {"name": AGENT, "workdir": str(workdir)},
                               "database": {"url": url}})
    started = time.perf_counter()
    registry = build_registry(config)  # counts the transition history once, before serving
    catch_up_s = time.perf_counter() - started
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    target = f"http://127.0.0.1:{server.server_port}/metrics"
    times = []
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(runs + 1):
                started = time.perf_counter()
                response = client.get(target)
                times.append(time.perf_counter() - started)
                response.raise_for_status()
    finally:
        server.shutdown()
    in_process = []  # the same without HTTP: database reads and text generation only
    for _ in range(runs):
        started = time.perf_counter()
        generate_latest(registry)
        in_process.append(time.perf_counter() - started)
    series = sum(1 for line in response.text.splitlines() if line and not line.startswith("#"))
    return {"catch_up_s": round(catch_up_s, 2), "first_ms": times[0] * 1000, "median_ms": statistics.median(times[1:]) * 1000,
            "in_process_median_ms": statistics.median(in_process) * 1000,
            "runs": runs, "series": series, "bytes": len(response.content)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--backend", choices=["sqlite", "mariadb"], default="sqlite")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        name = f"pa_bench_{uuid.uuid4().hex[:8]}"
        url = (f"sqlite:///{tmp}/agent.db" if args.backend == "sqlite" else create_database(name))
        try:
            migrate.upgrade(url)
            started = time.perf_counter()
            fill(url, args.jobs)
            fill_s = time.perf_counter() - started
            result = {"backend": args.backend, "jobs": args.jobs, "fill_s": round(fill_s, 1),
                      **measure(url, Path(tmp), args.runs)}
        finally:
            if args.backend == "mariadb":
                drop_database(name)
    print(f"/metrics with {result['jobs']:,} jobs ({result['backend']}): exporter start-up (counts "
          f"the job history) {result['catch_up_s']:.1f} s; first scrape {result['first_ms']:.0f} ms, "
          f"median of {result['runs']} more {result['median_ms']:.0f} ms (without HTTP "
          f"{result['in_process_median_ms']:.0f} ms; {result['series']} series, "
          f"{result['bytes']:,} bytes); target < 200 ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
