"""Benchmark of the pull protocol: acquire + renew + report (+ complete) throughput, in
allocations per second, with 1, 4 and 16 concurrent agent processes.

Each agent process loops: acquire a batch, renew the batch's leases, report progress on each
allocation, complete each. An allocation counts once it is completed. Every run starts on a
fresh database with one large request.

    .venv/bin/python bench/allocation.py                         # MariaDB and SQLite, via the DB layer
    .venv/bin/python bench/allocation.py --backend mariadb --via http --servers 2
    .venv/bin/python bench/allocation.py --agents 1,4,16 --duration 10 --json bench/results/allocation.json

`--via db` calls the services directly (each process has its own engine): it measures the
database and ProdManager's transactions. `--via http` runs `prodmanager serve` processes and
agents use `ProdManagerClient`: it adds HTTP, JSON and uvicorn.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.db import create_database, drop_database  # noqa: E402
from prodagent.components.prodmgr_interface import COMPLETE_PER_CALL, RENEW_CHUNK  # noqa: E402
from prodmanager.auth import Principal, create_token  # noqa: E402
from prodmanager.client import ProdManagerClient  # noqa: E402
from prodmanager.db import migrate  # noqa: E402
from prodmanager.db.engine import Database  # noqa: E402
from prodmanager.models import (  # noqa: E402
    AcquireRequest,
    AgentRegistration,
    CompleteReport,
    LeaseRef,
    ProgressReport,
    RenewRequest,
    Role,
)
from prodmanager.pull_service import PullService  # noqa: E402
from prodmanager.request_service import RequestService  # noqa: E402
from prodrequest.loader import validate_workflow  # noqa: E402
from prodrequest.spec import MAX_ALLOCATIONS  # noqa: E402


@dataclass
class Result:
    backend: str
    via: str
    agents: int
    batch: int
    duration_s: float
    allocations: int
    allocations_per_s: float
    calls_per_s: float
    acquire_p50_ms: float
    acquire_p99_ms: float
    cycle_p50_ms: float
    cycle_p99_ms: float
    exact: bool  # every completed allocation was completed once
    ran_dry: bool  # every prepared allocation was done before the end: the rate is a lower bound


# --- agent processes ----------------------------------------------------------------------------


def db_agent(
    db_url: str, agent: str, start_at: float, stop_at: float, batch: int
) -> dict[str, Any]:
    db = Database(db_url)
    pull = PullService(db, lease_seconds=300)
    who = Principal("bench-agent", Role.AGENT)

    def cycle() -> tuple[list[int], float]:
        t0 = time.perf_counter()
        allocations = pull.acquire(who, agent, AcquireRequest(jobs=batch)).allocations
        acquired = time.perf_counter() - t0
        leases = [
            LeaseRef(allocation_id=a.allocation_id, lease_token=a.lease_token) for a in allocations
        ]
        if leases:
            pull.renew(who, agent, RenewRequest(leases=leases))
        for a in allocations:
            token = a.lease_token
            pull.report(
                who,
                agent,
                a.allocation_id,
                ProgressReport(lease_token=token, events_done=1, job_state="running"),
            )
            pull.complete(
                who,
                agent,
                a.allocation_id,
                CompleteReport(lease_token=token, events_done=a.n_events),
            )
        return [a.allocation_id for a in allocations], acquired

    try:
        return _loop(cycle, start_at, stop_at)
    finally:
        db.dispose()


def http_agent(
    url: str, token: str, agent: str, start_at: float, stop_at: float, batch: int, bulk: bool = False
) -> dict[str, Any]:
    """`bulk`: the calls ProdMgrInterface makes (renew in chunks, `complete_many` of
    COMPLETE_PER_CALL, no per-allocation report); otherwise one report and complete each."""
    client = ProdManagerClient(url, token)
    calls = [0]  # bulk: the calls really made

    def cycle() -> tuple[list[int], float]:
        t0 = time.perf_counter()
        allocations = client.acquire(agent, jobs=batch)
        acquired = time.perf_counter() - t0
        for i in range(0, len(allocations), RENEW_CHUNK):
            client.renew(agent, allocations[i:i + RENEW_CHUNK])
        if bulk:
            for i in range(0, len(allocations), COMPLETE_PER_CALL):
                chunk = allocations[i:i + COMPLETE_PER_CALL]
                outcomes = client.complete_many(agent, [(a, a.n_events, []) for a in chunk])
                assert all(o.ack is not None for o in outcomes), outcomes
            calls[0] += 1 + math.ceil(len(allocations) / RENEW_CHUNK) + math.ceil(len(allocations) / COMPLETE_PER_CALL)
            return [a.allocation_id for a in allocations], acquired
        for a in allocations:
            client.report(agent, a, events_done=1, job_state="running")
            client.complete(agent, a, events_done=a.n_events)
        return [a.allocation_id for a in allocations], acquired

    try:
        out = _loop(cycle, start_at, stop_at)
        return {**out, "calls": calls[0]} if bulk else out
    finally:
        client.close()


def _loop(cycle: Any, start_at: float, stop_at: float) -> dict[str, Any]:
    time.sleep(max(0.0, start_at - time.time()))
    done: list[int] = []
    acquire_s: list[float] = []
    cycle_s: list[float] = []
    calls = 0
    while time.time() < stop_at:
        t0 = time.perf_counter()
        ids, acquired = cycle()
        cycle_s.append(time.perf_counter() - t0)
        acquire_s.append(acquired)
        done += ids
        calls += 1 + (1 if ids else 0) + 2 * len(ids)
    # The last cycle may end after stop_at: rates are over the time really taken.
    return {"done": done, "acquire_s": acquire_s, "cycle_s": cycle_s, "calls": calls,
            "elapsed_s": time.time() - start_at}


# --- set-up -------------------------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="pm-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"pm_bench_{uuid.uuid4().hex[:10]}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


def prepare(db_url: str, agents: int, jobs: int) -> tuple[str, int]:
    """Schema, an agent token, one request of `jobs` allocations, registered agents."""
    db = Database(db_url)
    migrate.upgrade(db.engine)
    token = create_token(db, "bench-agent", "agent")
    doc = {
        "kind": "montecarlo",
        "name": "bench",
        "payload": {"transformation": "pythia", "version": "8.317"},
        "events": {"total": jobs * 10, "per_job": 10},
        "output": {"dataset": "/Bench/bench-v1/GEN", "tier": "GEN"},
    }
    request = (
        RequestService(db).submit(Principal("bench", Role.OPERATOR), validate_workflow(doc)).request
    )
    pull = PullService(db)
    for i in range(agents):
        pull.register(
            Principal("bench-agent", Role.AGENT),
            AgentRegistration(name=f"agent{i}", capacity=10_000),
        )
    db.dispose()
    return token, request.id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def servers(db_url: str, count: int) -> Iterator[list[str]]:
    procs, urls = [], []
    for _ in range(count):
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "prodmanager",
            "serve",
            "--db",
            db_url,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen(cmd, env=env))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            _wait_ready(url)
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(10)


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 120  # a loaded machine starts 16 agents alongside
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server {url} did not start")


# --- one run ------------------------------------------------------------------------------------


def run(backend: str, via: str, agents: int, batch: int, duration: float, n_servers: int,
        bulk: bool = False) -> Result:
    # Enough that the pool does not run dry (ran_dry says if it did anyway), within one
    # allocation per job (a larger request would put several jobs in each allocation).
    jobs = min(MAX_ALLOCATIONS, max(5_000, int(agents * batch * 400), int(3_000 * duration)))
    with fresh_database(backend) as db_url:
        token, request_id = prepare(db_url, agents, jobs)
        context = multiprocessing.get_context("spawn")
        with context.Pool(agents) as pool, _maybe_servers(via, db_url, n_servers) as urls:
            start_at = time.time() + 3.0
            stop_at = start_at + duration
            if via == "db":
                args = [(db_url, f"agent{i}", start_at, stop_at, batch) for i in range(agents)]
                outs = pool.starmap(db_agent, args)
            else:
                args2 = [
                    (urls[i % len(urls)], token, f"agent{i}", start_at, stop_at, batch, bulk)
                    for i in range(agents)
                ]
                outs = pool.starmap(http_agent, args2)
        exact = _check(db_url, request_id, outs)
    return _summarise(backend, via, agents, batch, duration, outs, exact, jobs)


@contextmanager
def _maybe_servers(via: str, db_url: str, count: int) -> Iterator[list[str]]:
    if via == "db":
        yield []
    else:
        with servers(db_url, count) as urls:
            yield urls


def _check(db_url: str, request_id: int, outs: list[dict[str, Any]]) -> bool:
    done = [i for out in outs for i in out["done"]]
    db = Database(db_url)
    counters = RequestService(db).summary(request_id).counters
    db.dispose()
    return len(done) == len(set(done)) == counters.allocations["done"]


def _summarise(
    backend: str,
    via: str,
    agents: int,
    batch: int,
    duration: float,
    outs: list[dict[str, Any]],
    exact: bool,
    prepared: int,
) -> Result:
    done = sum(len(o["done"]) for o in outs)
    elapsed = max([duration] + [o["elapsed_s"] for o in outs])
    acquire = sorted(x for o in outs for x in o["acquire_s"])
    cycles = sorted(x for o in outs for x in o["cycle_s"])
    return Result(
        backend=backend,
        via=via,
        agents=agents,
        batch=batch,
        duration_s=duration,
        allocations=done,
        allocations_per_s=round(done / elapsed, 1),
        calls_per_s=round(sum(o["calls"] for o in outs) / elapsed, 1),
        acquire_p50_ms=round(_pct(acquire, 50) * 1000, 2),
        acquire_p99_ms=round(_pct(acquire, 99) * 1000, 2),
        cycle_p50_ms=round(_pct(cycles, 50) * 1000, 2),
        cycle_p99_ms=round(_pct(cycles, 99) * 1000, 2),
        exact=exact,
        ran_dry=done >= prepared,
    )


def _pct(values: list[float], p: int) -> float:
    if not values:
        return 0.0
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["mariadb", "sqlite", "both"], default="both")
    parser.add_argument("--via", choices=["db", "http"], default="db")
    parser.add_argument("--agents", default="1,4,16", help="comma-separated agent process counts")
    parser.add_argument("--batch", type=int, default=4, help="allocations per acquire")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--servers", type=int, default=1, help="serve processes for --via http")
    parser.add_argument("--bulk", action="store_true",
                        help="--via http: ProdMgrInterface's calls (complete_many), not one call each")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    backends = ["mariadb", "sqlite"] if args.backend == "both" else [args.backend]
    results = []
    print(
        f"{'backend':8} {'via':4} {'agents':>6} {'alloc/s':>9} {'calls/s':>9} {'acq p50':>8} {'acq p99':>8} {'cycle p50':>9} exact ran-dry"
    )
    for backend in backends:
        for agents in (int(n) for n in args.agents.split(",")):
            print(f"# load average before: {os.getloadavg()[0]:.2f}", flush=True)
            r = run(backend, args.via, agents, args.batch, args.duration, args.servers, args.bulk)
            results.append(r)
            print(
                f"{r.backend:8} {r.via:4} {r.agents:>6} {r.allocations_per_s:>9.1f} {r.calls_per_s:>9.1f} "
                f"{r.acquire_p50_ms:>6.1f}ms {r.acquire_p99_ms:>6.1f}ms {r.cycle_p50_ms:>7.1f}ms {r.exact} {r.ran_dry}",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "when": time.time(),
        }
        args.json.write_text(
            json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2)
        )


if __name__ == "__main__":
    main()
