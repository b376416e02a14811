"""Agent processes for the concurrency tests.

- `db_layer_agent`: a process that acquires straight through the service and database layer
  (run with multiprocessing, spawn);
- `python -m tests.prodmanager.workers URL TOKEN AGENT OUT --mode work|hold`: an agent over HTTP
  with `ProdManagerClient`, writing what it got as JSON lines to OUT. `work` acquires, reports,
  renews and completes until killed; `hold` acquires once and then sleeps holding its leases.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

from prodmanager.auth import Principal
from prodmanager.client import ProdManagerClient
from prodmanager.db.engine import Database
from prodmanager.errors import LeaseLost
from prodmanager.models import AcquireRequest, Allocation, OutputFile, Role
from prodmanager.pull_service import PullService


def wait_for(start_file: Path | None) -> None:
    """Block until the test creates `start_file`, so that all agents begin together."""
    while start_file is not None and not start_file.exists():
        time.sleep(0.005)


def db_layer_agent(
    db_url: str, agent: str, token_name: str, jobs: int, barrier: Any, results: Any
) -> None:
    """Acquire until nothing is left; puts (agent, [(allocation id, first event, events,
    token)...]) on `results`."""
    db = Database(db_url)
    pull = PullService(db, lease_seconds=600)
    who = Principal(token_name, Role.AGENT)
    got: list[tuple[int, int, int, str]] = []
    barrier.wait()
    while True:
        allocations = pull.acquire(who, agent, AcquireRequest(jobs=jobs)).allocations
        if not allocations:
            break
        got += [(a.allocation_id, a.first_event, a.n_events, a.lease_token) for a in allocations]
    db.dispose()
    results.put((agent, got))


def http_agent(
    url: str, token: str, agent: str, out: Path, mode: str, jobs: int, start_file: Path | None
) -> None:
    client = ProdManagerClient(url, token)
    client.register_agent(agent, sites=["TEST"], capacity=jobs)
    with out.open("a") as log:
        _log_line(log, {"agent": agent, "event": "ready"})
        wait_for(start_file)
        if mode == "hold":
            for a in client.acquire(agent, jobs=jobs):
                _log(log, agent, a, "acquired")
            _log_line(log, {"agent": agent, "event": "holding"})
            time.sleep(3600)
        while True:
            allocations = client.acquire(agent, jobs=jobs)
            if not allocations:
                time.sleep(0.2)
                continue
            for a in allocations:
                _log(log, agent, a, "acquired")
            client.renew(agent, allocations)
            for a in allocations:
                try:
                    _run_job(client, agent, a)
                except LeaseLost:
                    _log(log, agent, a, "lost")
                else:
                    _log(log, agent, a, "completed")


def _run_job(client: ProdManagerClient, agent: str, a: Allocation) -> None:
    client.report(agent, a, events_done=a.n_events // 2, job_state="running")
    lfn = f"/store/unmerged/{a.request_name}/job{a.job_index}.epoch{a.lease_epoch}.root"
    files = [OutputFile(lfn=lfn, size=1000, checksum="adler32:1", events=a.n_events)]
    client.complete(agent, a, events_done=a.n_events, files=files)


def _log(log: TextIO, agent: str, a: Allocation, event: str) -> None:
    fields = ("allocation_id", "lease_token", "lease_epoch", "first_event", "n_events")
    _log_line(log, {"agent": agent, "event": event, **{f: getattr(a, f) for f in fields}})


def _log_line(log: TextIO, record: dict[str, object]) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def read_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("agent")
    parser.add_argument("out", type=Path)
    parser.add_argument("--mode", choices=["work", "hold"], default="work")
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--start-file", type=Path, default=None)
    args = parser.parse_args()
    http_agent(args.url, args.token, args.agent, args.out, args.mode, args.jobs, args.start_file)


if __name__ == "__main__":
    main()
