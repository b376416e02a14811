"""Benchmark of bulk completion in ProdManager: `complete_many` of COMPLETE_PER_CALL allocations
(one output file each, as ProdMgrInterface sends them), one by one against the few-statement
path, in the same run on fresh databases; allocations/s, medians of `--rounds`.

    .venv/bin/python bench/complete_many.py --backend mariadb --allocations 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.allocation import fresh_database  # noqa: E402
from prodagent.components.prodmgr_interface import COMPLETE_PER_CALL  # noqa: E402
from prodmanager.auth import Principal  # noqa: E402
from prodmanager.db import migrate  # noqa: E402
from prodmanager.db.engine import Database  # noqa: E402
from prodmanager.models import (  # noqa: E402
    AcquireRequest,
    AgentRegistration,
    CompleteItem,
    CompleteMany,
    OutputFile,
    Role,
)
from prodmanager.pull_service import PullService  # noqa: E402
from prodmanager.request_service import RequestService  # noqa: E402
from prodrequest.loader import validate_workflow  # noqa: E402

AGENT = Principal("bench-agent", Role.AGENT)


def one(backend: str, allocations: int, bulk: bool) -> float:
    """Allocations completed per second by `complete_many`, bulk path on or off."""
    with fresh_database(backend) as url:
        db = Database(url)
        migrate.upgrade(db.engine)
        doc = {"kind": "montecarlo", "name": "bench", "payload": {"transformation": "pythia", "version": "8.317"},
               "events": {"total": allocations * 10, "per_job": 10},
               "output": {"dataset": "/Bench/bench-v1/GEN", "tier": "GEN"}}
        RequestService(db).submit(Principal("bench", Role.OPERATOR), validate_workflow(doc))
        pull = PullService(db)
        pull.bulk_complete = bulk
        pull.register(AGENT, AgentRegistration(name="a", capacity=allocations))
        leased = []
        while batch := pull.acquire(AGENT, "a", AcquireRequest(jobs=1000)).allocations:
            leased += batch
        items = [CompleteItem(allocation_id=a.allocation_id, lease_token=a.lease_token, events_done=a.n_events,
                              files=[OutputFile(lfn=f"/store/bench/{a.allocation_id}.root", size=1000,
                                                checksum="adler32:00000001", events=a.n_events)])
                 for a in leased]
        t0 = time.perf_counter()
        for i in range(0, len(items), COMPLETE_PER_CALL):
            acks = pull.complete_many(AGENT, "a", CompleteMany(items=items[i:i + COMPLETE_PER_CALL])).results
            assert all(r.ack is not None for r in acks), acks[:3]
        elapsed = time.perf_counter() - t0
        db.dispose()
        return len(items) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["mariadb", "sqlite"], default="mariadb")
    parser.add_argument("--allocations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"one_by_one": [], "bulk": []}
    for _ in range(args.rounds):  # interleaved: both see the same load
        rates["one_by_one"].append(one(args.backend, args.allocations, False))
        rates["bulk"].append(one(args.backend, args.allocations, True))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.backend}: complete_many, {args.allocations} allocations, {COMPLETE_PER_CALL} per call")
    for k, v in medians.items():
        print(f"  {k:10s} {v:8.0f} allocations/s (median of {args.rounds})")
    print(f"  ratio bulk/one_by_one: {medians['bulk'] / medians['one_by_one']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "rates": rates, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
