"""Benchmark of the whole system: N agents (JobEmulator) pulling from 2 `prodmanager serve` on one
MariaDB, through the whole life cycle (acquire, create, submit, track, complete, cleanup).

Prints total jobs/s (allocations completed in ProdManager per second over a measuring window
after a warm-up), each agent's share of them (agent 0 has `--big` times the slots of the others),
and ProdManager's CPU seconds per job (user + system of both servers over the window). Each run
starts from fresh databases. The figure to read is the ratio of the runs, measured the same way
in the same invocation:

    .venv/bin/python bench/multi_agent.py                       # 1 agent, then 4; ratio 4 vs 1
    .venv/bin/python bench/multi_agent.py --agents 1,4 --window 30 --json bench/results/multi_agent.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.db import create_database, drop_database  # noqa: E402
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config  # noqa: E402
from prodmanager.db.schema import allocation  # noqa: E402


def workflow(jobs: int) -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": f"bench-{uuid.uuid4().hex[:8]}",
        "payload": {"transformation": "pythia", "version": "8.317", "parameters": {"process": "minbias"}},
        "events": {"total": jobs, "per_job": 1},
        "output": {"dataset": f"/Bench/multi{uuid.uuid4().hex[:6]}/GEN", "tier": "GEN"},
        "merge": {"enabled": False},
        "retry": {"max_retries": 3, "cooloff": "linear", "base_s": 1},
    }


def done_by_agent(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(allocation.c.agent, sa.func.count())
                            .where(allocation.c.state == "done").group_by(allocation.c.agent)).all()
    return {str(a): int(n) for a, n in rows}


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def run(n_agents: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    name = f"pa_bench_multi_{uuid.uuid4().hex[:8]}"
    db_url = create_database(name)
    managers = [Manager(tmp / f"pm{i}", db_url, lease_s=600) for i in range(2)]
    agents: list[AgentProcesses] = []
    try:
        for m in managers:
            m.start()
        managers[1].tokens = managers[0].tokens  # one database: the same tokens serve both
        for i in range(n_agents):
            slots = args.slots * (args.big if i == 0 and n_agents > 1 else 1)
            emulator = {"seed": i, "slots": slots, "duration": {"distribution": "uniform", "min_s": 0.5 * args.job_s,
                                                                "max_s": 1.5 * args.job_s},
                        "write_reports": True, "output_bytes": 64, "reports_by": "nodes"}
            config = write_agent_config(
                tmp / f"agent{i}-{n_agents}.yaml", tmp / f"agent{i}-{n_agents}", managers[i % 2],
                db_url=f"sqlite:///{tmp / f'agent{i}-{n_agents}.db'}", name=f"agent{i}",
                batch={"plugin": "emulator", "options": emulator},
                settings={"ProdMgrInterface": {"tick_s": 0.5, "queue_factor": 0.5},
                          "JobSubmitter": {"tick_s": 0.5, "max_queued_per_slot": 0.5},
                          "JobTracker": {"tick_s": 0.5}, "ResourceMonitor": {"tick_s": 1.0}})
            agent = AgentProcesses(config)
            assert agent.cli("db", "upgrade").returncode == 0
            agents.append(agent)
        client = managers[0].client("requester", "bench")
        client.submit(workflow(args.jobs))
        for agent in agents:
            agent.start()
        engine = sa.create_engine(db_url)
        time.sleep(args.warmup)
        procs = [psutil.Process(m.proc.pid) for m in managers if m.proc]
        before, cpu0, t0 = done_by_agent(engine), cpu_s(procs), time.monotonic()
        time.sleep(args.window)
        after, cpu1, t1 = done_by_agent(engine), cpu_s(procs), time.monotonic()
        engine.dispose()
        per_agent = {a: after.get(a, 0) - before.get(a, 0) for a in sorted(set(after) | set(before))}
        jobs = sum(per_agent.values())
        return {
            "agents": n_agents, "slots": [args.slots * (args.big if i == 0 and n_agents > 1 else 1)
                                          for i in range(n_agents)],
            "window_s": round(t1 - t0, 1), "jobs": jobs, "jobs_per_s": round(jobs / (t1 - t0), 2),
            "share": {a: round(n / jobs, 3) if jobs else 0.0 for a, n in per_agent.items()},
            "prodmanager_cpu_ms_per_job": round(1000 * (cpu1 - cpu0) / jobs, 2) if jobs else None,
            "ran_dry": sum(after.values()) >= args.jobs,
        }
    finally:
        for agent in agents:
            agent.stop()
        for m in managers:
            m.stop()
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="1,4", help="agent counts to run, e.g. 1,4")
    parser.add_argument("--slots", type=int, default=40, help="emulator slots per agent")
    parser.add_argument("--big", type=int, default=2, help="agent 0 has this many times the slots (runs of >1 agent)")
    parser.add_argument("--job-s", type=float, default=1.0, help="mean emulated job length")
    parser.add_argument("--jobs", type=int, default=20000, help="jobs in the request (enough not to run dry)")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as tmp:
        for n in [int(x) for x in args.agents.split(",")]:
            result = run(n, args, Path(tmp) / f"run{n}")
            results.append(result)
            print(json.dumps(result), flush=True)
    if len(results) >= 2 and results[0]["jobs_per_s"]:
        ratio = results[-1]["jobs_per_s"] / results[0]["jobs_per_s"]
        print(f"total jobs/s, {results[-1]['agents']} agents vs {results[0]['agents']}: {ratio:.2f} "
              f"(machine load average {psutil.getloadavg()[0]:.1f} on {psutil.cpu_count()} CPUs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
