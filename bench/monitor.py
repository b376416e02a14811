"""Benchmark of the web monitor: server time and size of each page with 100 requests and 100,000
jobs (allocations) in the database, plus job events, failed attempts' logs and files. Every tenth
request is a processing request (its jobs read input files, in runs).

Each page (and its JSON twin) is fetched `--repeat` times over real HTTP from `prodmanager serve`
in-process (uvicorn in a thread), as an operator; printed: median and p95 of the time to the
last byte, and the bytes of the body. Targets: p95 < 300 ms, body < 500 kB.

    .venv/bin/python bench/monitor.py                       # SQLite
    .venv/bin/python bench/monitor.py --backend mariadb --json bench/results/monitor.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.db import create_database, drop_database  # noqa: E402
from prodagent.demo.stack import free_port  # noqa: E402
from prodmanager.app import ServerSettings, create_app  # noqa: E402
from prodmanager.auth import create_token  # noqa: E402
from prodmanager.db.schema import agent, allocation, file, job_event, job_log, request  # noqa: E402

TARGET_P95_MS = 300.0
TARGET_BYTES = 500_000


def kind_of(r: int) -> str:
    """Every tenth request processes input files (one a job, runs of 100 files)."""
    return "processing" if r % 10 == 9 else "montecarlo"


def fill(engine: sa.Engine, requests: int, jobs: int) -> None:
    """`requests` requests sharing `jobs` allocations, in every state, with events and files."""
    rnd = random.Random(1)
    now = time.time()
    per = jobs // requests
    sites = ["T1_A", "T2_B", "T2_C", "T3_D"]
    with engine.begin() as conn:
        conn.execute(agent.insert(), [
            {"name": f"agent{i}", "sites": json.dumps(sites[i % 4: i % 4 + 2]), "capacity": 500,
             "token_name": f"agent{i}", "registered_at": now - 86400, "last_seen": now - i}
            for i in range(8)
        ])
        conn.execute(request.insert(), [
            {"id": r + 1, "name": f"bench-{r}", "kind": kind_of(r), "owner": f"user{r % 7}",
             "state": rnd.choice(["running", "running", "assigned", "completed", "new"]),
             "priority": 1000, "total_events": per * 100, "total_jobs": per, "run_number": r + 1,
             "sites": json.dumps({"whitelist": [], "blacklist": []}),
             "spec": json.dumps({"kind": kind_of(r), "output": {"dataset": f"/Bench/bench-{r}-v1/GEN"}}),
             "spec_sha256": f"{r:064d}", "created_at": now - 86400, "updated_at": now}
            for r in range(requests)
        ])
        rows, events, logs, files = [], [], [], []
        seq = 0
        for r in range(requests):
            for j in range(per):
                aid = r * per + j + 1
                state = rnd.choices(["done", "open", "failed"], [70, 25, 5])[0]
                # agents hold at most their capacity (8 x 500): about 3,750 leased at once
                leased = state == "open" and rnd.random() < 0.15
                rows.append({
                    "id": aid, "request_id": r + 1, "job_index": j, "first_event": j * 100,
                    "n_events": 100, "seed": aid, "state": state,
                    "input_files": json.dumps([{"lfn": f"/store/raw/{aid}.raw", "run": 1000 + j // 100,
                                                "events": 100}]) if kind_of(r) == "processing" else None,
                    "agent": f"agent{aid % 8}" if state != "open" or leased else None,
                    "lease_token": "t" if leased else None, "lease_epoch": 1,
                    "lease_expires": now + 3600 if leased else 0, "lease_seconds": 3600,
                    "events_done": 100 if state == "done" else 0,
                    "job_state": rnd.choice(["running", "cooloff", "paused"]) if leased else None,
                    "reason": "PayloadError: exit code 66; 3 retries used" if state == "failed" else None,
                    "updated_at": now - rnd.random() * 86400,
                })
                if state == "done" and j % 10 == 0:
                    files.append({"lfn": f"/store/bench/{aid}.root", "request_id": r + 1,
                                  "allocation_id": aid, "kind": "unmerged", "state": "valid",
                                  "size": 300_000, "checksum": "adler32:0badcafe", "events": 100,
                                  "agent": f"agent{aid % 8}", "created_at": now})
                if state == "failed" or rnd.random() < 0.05:
                    seq += 1
                    events.append({"id": seq, "agent": f"agent{aid % 8}", "seq": seq,
                                   "allocation_id": aid, "request_id": r + 1, "job_name": f"j{aid}",
                                   "retry": 0, "from_state": "running", "to_state": "jobfailed",
                                   "at": now, "reason": "the job failed", "site": rnd.choice(sites),
                                   "exit_code": 66, "error_class": rnd.choice(["PayloadError", "OutOfMemory"]),
                                   "resources": "{}"})
                    logs.append({"event_id": seq, "allocation_id": aid, "text": "log line\n" * 200})
        for chunk in range(0, len(rows), 5000):
            conn.execute(allocation.insert(), rows[chunk:chunk + 5000])
        conn.execute(file.insert(), files)
        conn.execute(job_event.insert(), events)
        conn.execute(job_log.insert(), logs)


def serve(db_url: str) -> tuple[uvicorn.Server, str, str]:
    app = create_app(ServerSettings(db_url=db_url))
    token = create_token(app.state.db, "bench-ops", "operator")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}", token


def measure(url: str, token: str, pages: list[str], repeat: int) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for page in pages:
            times, size = [], 0
            for _ in range(repeat):
                start = time.perf_counter()
                answer = c.get(page)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, (page, answer.status_code, answer.text[:300])
                size = len(answer.content)
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            out.append({"page": page, "median_ms": round(statistics.median(times), 1),
                        "p95_ms": round(p95, 1), "bytes": size,
                        "ok": p95 < TARGET_P95_MS and size < TARGET_BYTES})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "mariadb"], default="sqlite")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    name = f"pa_bench_monitor_{int(time.time())}"
    db_url = (f"sqlite:///{tmp.name}/monitor.db" if args.backend == "sqlite"
              else create_database(name))
    try:
        server, url, token = serve(db_url)
        start = time.perf_counter()
        fill(server.config.app.state.db.engine, args.requests, args.jobs)
        print(f"filled {args.requests} requests, {args.jobs} jobs in {time.perf_counter() - start:.1f} s "
              f"({args.backend})")
        rid = args.requests // 2
        pid = next(r + 1 for r in range(rid, args.requests) if kind_of(r) == "processing")
        jid = args.jobs // 2
        pages = ["/requests", f"/requests/{rid}", f"/requests/{rid}/live", f"/requests/{pid}", "/jobs",
                 f"/jobs?request={rid}&state=failed", "/jobs?error_class=PayloadError&site=T2_B",
                 f"/jobs/{jid}", "/agents", "/sites",
                 "/api/v1/monitor/requests", f"/api/v1/monitor/requests/{rid}",
                 "/api/v1/monitor/jobs", "/api/v1/monitor/sites"]
        results = measure(url, token, pages, args.repeat)
        server.should_exit = True
    finally:
        if args.backend == "mariadb":
            drop_database(name)
        tmp.cleanup()
    print(f"{'page':48} {'median ms':>10} {'p95 ms':>8} {'bytes':>9}  target")
    for r in results:
        print(f"{r['page']:48} {r['median_ms']:>10} {r['p95_ms']:>8} {r['bytes']:>9}  "
              f"{'ok' if r['ok'] else 'MISSED'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"backend": args.backend, "requests": args.requests,
                                         "jobs": args.jobs, "repeat": args.repeat,
                                         "results": results}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
