"""Agent scale benchmark: a whole agent driven through a request of N emulated jobs.

Real processes throughout: `prodmanager serve` (its database on MariaDB, or SQLite), every agent
component as a daemon started by `prodAgentd`, the agent's database a fresh MariaDB database
(`pa_scale_<pid>`, dropped at the end), the JobEmulator as batch system: jobs run 1-5 s and 5% of
attempts fail with exit code 1 (the ErrorHandler retries them after 1 s, up to 5 times; the
emulator draws each attempt afresh, so 5% of the retries fail again; the emulated jobs' results
are written by the emulator's node process, as real jobs write theirs on their nodes), the merge policy makes
merge jobs of 50-100 files, and MergeSensor and Cleanup merge and clean everything. Prints and writes (`--json`):

  jobs_per_s        production jobs / (last production job cleaned - first job created)
  tracker           from JobTracker's log ("cycle over N active job(s) in X s"): the cycle at the
                    largest active count, the slowest, the median
  tracker_direct    JobTracker ticks measured in process over `--tracker-jobs` (100,000) active
                    jobs in a database of their own: the store query, the plugin query, whole
                    ticks with no change, and one tick after 5% of them ended
  peak_rss_mb       of each component (and of the ProdManager server), sampled every second
                    from the pid files; cpu_s: CPU seconds of each (and of mariadbd and the emulator's node
                    process) during the run
  messages_left     rows in the message table at the end (and dead letters)

    .venv/bin/python -m bench.agent_scale --jobs 10000 [--pm-db mariadb|sqlite] [--json FILE]
    .venv/bin/python -m bench.agent_scale --jobs 100000 --no-tracker --json FILE
    .venv/bin/python -m bench.agent_scale --tracker-only [--tracker-jobs 100000] [--profile]

`--profile` prints cProfile's top functions of the direct ticks (where the time goes); for the
running daemons, `py-spy record -p PID` (PyPI) samples a component from outside.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
import yaml

from bench.db import create_database, drop_database
from bench.messaging import server_process
from prodagent.components.registry import BUILTIN
from prodagent.config import DEFAULT_COMPONENTS, AgentConfig, load_config
from prodagent.db.schema import ms_dead_letter, ms_message, pa_allocation, pa_job, pa_job_transition
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.runtime import pidfiles
from prodagent.runtime.logs import log_path

EVENTS_PER_JOB = 10
OUTPUT_BYTES = 1024
CYCLE_LINE = re.compile(r"^(\S+ \S+) .*cycle over (\d+) active job\(s\) in ([\d.]+)s")


# -- the request and the agent -------------------------------------------------------------------

def workflow(name: str, jobs: int, merge_files: tuple[int, int]) -> dict[str, Any]:
    low, high = merge_files
    return {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "ecm": 13000.0}},
        "events": {"total": EVENTS_PER_JOB * jobs, "per_job": EVENTS_PER_JOB},
        "seeds": {"policy": "sequential", "base": 100},
        "output": {"dataset": f"/Scale/{name}/GEN", "tier": "GEN"},
        # Each emulated output is OUTPUT_BYTES bytes of EVENTS_PER_JOB events: 50-100 per merge.
        "merge": {"enabled": True, "min_size_bytes": low * OUTPUT_BYTES, "max_size_bytes": high * OUTPUT_BYTES,
                  "max_events": high * EVENTS_PER_JOB, "max_wait_s": 30},
        "retry": {"max_retries": 5, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 1000, "time_s": 600},
        "priority": 1000,
    }


def emulator_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": 1,
        "duration": {"distribution": "uniform", "min_s": args.min_s, "max_s": args.max_s},
        "outcomes": [{"probability": args.fail_rate, "exit_code": 1}] if args.fail_rate else [],
        "slots": args.slots,
        "nodes": 50,
        "output_bytes": OUTPUT_BYTES,
        "reports_by": "nodes",  # results written by the emulated jobs' nodes, not by the agent
    }


def available_components() -> list[str]:
    """The default components whose modules exist in this checkout."""
    import importlib.util

    names = []
    for name in DEFAULT_COMPONENTS:
        module = BUILTIN[name].partition(":")[0]
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names


def agent_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        "ProdMgrInterface": {"tick_s": 1.0, "queue_factor": 1.0, "max_acquire": 1000, "lease_s": 3600.0,
                             "renew_interval_s": 60.0},
        "ResourceMonitor": {"tick_s": 2.0},
        "JobSubmitter": {"tick_s": 1.0, "bulk_size": 5000},
        "JobTracker": {"tick_s": args.tracker_tick_s},
        "MergeSensor": {"tick_s": 2.0},
        **({"Cleanup": {"io_workers": args.cleanup_io_workers}} if args.cleanup_io_workers else {}),
    }


# -- sampling ------------------------------------------------------------------------------------

NODES = "emulator-nodes"

class RssSampler(threading.Thread):
    """Peak RSS and CPU seconds per component (from the pid files) and of extra processes
    (the ProdManager server, the MariaDB server, the emulator's node process), once a second."""

    def __init__(self, config: AgentConfig, components: list[str], extra: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.components = components
        self.extra = extra
        self.peak_mb: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}
        self.cpu_start: dict[str, float] = {}
        self.node_cpu: dict[str, float] = {}  # per emulator node process
        self.stop = threading.Event()

    def _pids(self) -> dict[str, int]:
        pids = dict(self.extra)
        for name in self.components:
            state = pidfiles.read_pid(self.config, name)
            if state.alive and state.pid:
                pids[name] = state.pid
        # The emulator's node process (the batch system's side, started by the plugin, restarted
        # after idling) shares the machine: its CPU is summed over its successive pids.
        workdir = str(self.config.workdir)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = proc.info["cmdline"] or []
            if "prodagent.batch.emulator_nodes" in cmd and workdir in cmd:
                pids[f"{NODES}:{proc.info['pid']}"] = proc.info["pid"]
        return pids

    def run(self) -> None:
        pids: dict[str, int] = {}
        next_lookup = 0.0
        while not self.stop.wait(1.0):
            if time.monotonic() >= next_lookup:
                pids = self._pids()
                # Every second until every component is up, then every 10 s.
                all_up = len(pids) >= len(self.extra) + len(self.components)
                next_lookup = time.monotonic() + (10.0 if all_up else 0.0)
            for name, pid in pids.items():
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss / 2**20
                    times = proc.cpu_times()
                except psutil.Error:
                    next_lookup = 0.0
                    continue
                # Components start during the run: all their CPU counts. The extra processes
                # ran before it: only what they use from the first sample on.
                self.cpu_start.setdefault(name, times.user + times.system if name in self.extra else 0.0)
                self.cpu_s[name] = times.user + times.system - self.cpu_start[name]
                if name.startswith(NODES + ":"):
                    self.node_cpu[name] = self.cpu_s.pop(name)
                    self.cpu_s[NODES] = sum(self.node_cpu.values())
                    name = NODES
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss)


POLL_S = 5.0  # how often the job counts are read


def job_counts(engine: sa.Engine, but: str | None = None) -> Counter[tuple[str, str]]:
    """Jobs by type and state (`but`: except those in that state), read from the agent's metrics
    index. The poll is not what is measured: leaving out the final state keeps it from reading
    every job of a 1,000,000-job run every few seconds."""
    query = sa.select(pa_job.c.job_type, pa_job.c.state, sa.func.count()).where(pa_job.c.agent == "scale")
    if but:
        query = query.where(pa_job.c.state != but)
    with engine.connect() as conn:
        rows = conn.execute(query.group_by(pa_job.c.job_type, pa_job.c.state)).all()
    return Counter({(t, s): int(n) for t, s, n in rows})


def held_allocations(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(pa_allocation)
                                .where(pa_allocation.c.state.in_(["acquired", "active"]))).scalar() or 0)


def finished(counts: Counter[tuple[str, str]], jobs: int, final_state: str) -> bool:
    production_done = counts[("production", final_state)]
    live = sum(n for (_t, s), n in counts.items() if s not in ("cleaned", "success", "killed", "exhausted", "paused"))
    merges_busy = sum(n for (t, s), n in counts.items() if t == "merge" and s not in (final_state, "killed", "exhausted"))
    return production_done >= jobs and live == 0 and merges_busy == 0


def tracker_cycles(config: AgentConfig) -> list[dict[str, Any]]:
    cycles = []
    path = log_path(config, "JobTracker")
    for candidate in sorted(path.parent.glob(path.name + "*"), reverse=True):
        for line in candidate.read_text(errors="replace").splitlines():
            m = CYCLE_LINE.search(line)
            if m:
                cycles.append({"at": m.group(1), "active": int(m.group(2)), "seconds": float(m.group(3))})
    return cycles


def life_cycle(engine: sa.Engine, final_state: str) -> dict[str, Any]:
    T = pa_job_transition
    with engine.connect() as conn:
        first_created = conn.execute(sa.select(sa.func.min(pa_job.c.created_at))).scalar()
        last_final = conn.execute(
            sa.select(sa.func.max(T.c.at)).select_from(T.join(pa_job, pa_job.c.id == T.c.job_id))
            .where(T.c.to_state == final_state, pa_job.c.job_type == "production")
        ).scalar()
        retries = Counter(dict(conn.execute(
            sa.select(pa_job.c.retry, sa.func.count()).where(pa_job.c.job_type == "production")
            .group_by(pa_job.c.retry)).all()))
        allocations = Counter(dict(conn.execute(
            sa.select(pa_allocation.c.state, sa.func.count()).group_by(pa_allocation.c.state)).all()))
        messages = conn.execute(sa.select(sa.func.count()).select_from(ms_message)).scalar()
        by_type = dict(conn.execute(sa.select(ms_message.c.msg_type, sa.func.count())
                                    .group_by(ms_message.c.msg_type)).all())
        dead = conn.execute(sa.select(sa.func.count()).select_from(ms_dead_letter)).scalar()
    return {
        "first_created": first_created, "last_final": last_final,
        "retries": {int(k): int(v) for k, v in retries.items()},
        "allocations": {str(k): int(v) for k, v in allocations.items()},
        "messages_left": int(messages or 0), "messages_by_type": {str(k): int(v) for k, v in by_type.items()},
        "dead_letters": int(dead or 0),
    }


# -- the full run --------------------------------------------------------------------------------

def run_production(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    agent_db_name = f"pa_scale_{os.getpid()}"
    pm_db_name = f"pa_scale_pm_{os.getpid()}"
    agent_db = create_database(agent_db_name)
    pm_db = create_database(pm_db_name) if args.pm_db == "mariadb" else f"sqlite:///{workdir / 'pm' / 'pm.db'}"
    components = available_components()
    missing = [c for c in DEFAULT_COMPONENTS if c not in components]
    if missing:
        print(f"not in this checkout, run without: {', '.join(missing)}")
    final_state = "cleaned" if "Cleanup" in components else "success"
    manager = Manager(workdir / "pm", pm_db, lease_s=3600)
    agent: AgentProcesses | None = None
    sampler: RssSampler | None = None
    result: dict[str, Any] = {"jobs": args.jobs, "pm_db": args.pm_db, "components": components,
                              "final_state": final_state, "emulator": emulator_options(args)}
    try:
        manager.start()
        config_path = write_agent_config(
            workdir / "agent.yaml", workdir / "agent", manager, db_url=agent_db, name="scale",
            settings=agent_settings(args), batch={"plugin": "emulator", "options": emulator_options(args)},
        )
        raw = yaml.safe_load(config_path.read_text())
        raw["components"]["enabled"] = components
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        agent = AgentProcesses(config_path)
        config = load_config(config_path)
        engine = sa.create_engine(agent_db, poolclass=sa.pool.NullPool)
        client = manager.client("requester", "scale")
        assert manager.proc is not None
        extra = {"prodmanager": manager.proc.pid}
        if server := server_process():
            extra["mariadbd"] = server.pid
        sampler = RssSampler(config, components, extra)
        sampler.start()
        started = time.monotonic()
        agent.start()
        request = client.submit(workflow(f"scale-{args.jobs}-{os.getpid()}", args.jobs, (args.merge_min, args.merge_max)))
        request_id = request.request.id
        print(f"request {request_id}: {args.jobs} jobs; agent db {agent_db_name}, ProdManager db {args.pm_db}")
        deadline = started + args.timeout
        last_print = 0.0
        counts: Counter[tuple[str, str]] = Counter()
        changed_at, last_counts = time.monotonic(), counts
        while time.monotonic() < deadline:
            # The jobs not yet in the final state each poll; all of them only to print progress,
            # or when none is left working.
            unfinished = job_counts(engine, but=final_state)
            show = time.monotonic() - last_print >= args.progress_s
            if show or finished(unfinished, 0, final_state):
                counts = job_counts(engine)
                if finished(counts, args.jobs, final_state) and not held_allocations(engine):
                    break
            if unfinished != last_counts:
                changed_at, last_counts = time.monotonic(), unfinished
            elif time.monotonic() - changed_at > args.stall_s:
                result["stalled"] = True
                print(f"no job changed state for {args.stall_s:.0f}s: stalled")
                break
            if show:
                last_print = time.monotonic()
                shown = ", ".join(f"{t[0]}:{s}={n}" for (t, s), n in sorted(counts.items()))
                print(f"  {time.monotonic() - started:7.1f}s  {shown}", flush=True)
            time.sleep(POLL_S)
        else:
            result["timed_out"] = True
            print(f"timed out after {args.timeout:.0f}s")
        wall = time.monotonic() - started
        # Let the queues drain (JobSuccess to Cleanup, MergeAccepted, ...), then count what is left.
        drain_deadline = time.monotonic() + args.drain_s
        while time.monotonic() < drain_deadline:
            with engine.connect() as conn:
                if not conn.execute(sa.select(sa.func.count()).select_from(ms_message)
                                    .where(ms_message.c.available_at <= time.time())).scalar():
                    break
            time.sleep(1.0)
        counts = job_counts(engine)
        summary = life_cycle(engine, final_state)
        try:
            detail = client.get(request_id)
            result["request"] = {"state": str(detail.state), **detail.counters.model_dump()}
        except Exception as exc:  # noqa: BLE001 - report what we can
            result["request"] = {"error": str(exc)}
        span = (summary["last_final"] or 0) - (summary["first_created"] or 0)
        done = counts[("production", final_state)]
        result.update(summary)
        result["wall_s"] = round(wall, 1)
        result["job_states"] = {f"{t}:{s}": n for (t, s), n in sorted(counts.items())}
        result["life_cycle_s"] = round(span, 1)
        result["jobs_per_s"] = round(done / span, 1) if span > 0 else None
        result["merge_jobs"] = sum(n for (t, _s), n in counts.items() if t == "merge")
        cycles = tracker_cycles(config)
        if cycles:
            top = max(cycles, key=lambda c: (c["active"], c["seconds"]))
            result["tracker"] = {
                "cycles": len(cycles), "largest_active": top["active"], "seconds_at_largest": top["seconds"],
                "slowest_s": max(c["seconds"] for c in cycles),
                "median_s": round(statistics.median(c["seconds"] for c in cycles), 3),
            }
        engine.dispose()
    finally:
        if sampler:
            sampler.stop.set()
            sampler.join(5)
            result["peak_rss_mb"] = {k: round(v, 1) for k, v in sorted(sampler.peak_mb.items()) if k != "mariadbd"}
            result["cpu_s"] = {k: round(v, 1) for k, v in sorted(sampler.cpu_s.items())}
        if agent:
            agent.stop()
        manager.stop()
        if not args.keep:
            drop_database(agent_db_name)
            if args.pm_db == "mariadb":
                drop_database(pm_db_name)
    return result


# -- one tracker cycle over many active jobs, measured directly -----------------------------------

def measure_tracker(n: int, workdir: Path, finished_share: float = 0.05, keep: bool = False,
                    profile: bool = False) -> dict[str, Any]:
    """JobTracker ticks over `n` running jobs, in process, on a database of their own.

    First the parts (the store query, whole rows and the tracker's columns; the plugin query),
    then whole ticks where no job changes state, then one tick after `finished_share` of the
    jobs ended (their reports written beforehand, as real jobs write their own; the tracker
    reads them, moves the jobs and registers their outputs).
    """
    import sqlite3

    from prodagent.batch.base import BatchJob
    from prodagent.batch.emulator import JobEmulator, JobEmulatorOptions
    from prodagent.components.job_tracker import ACTIVE_COLUMNS, JobTracker
    from prodagent.config import config_from_dict
    from prodagent.db.schema import pa_dataset
    from prodagent.jobs import states, store
    from prodagent.jobs.layout import Layout
    from prodagent.runtime.component import Context
    from prodagent.runtime.runner import open_service, wait_for_database

    name = f"pa_scale_tr_{os.getpid()}"
    url = create_database(name)
    options = {"duration": {"distribution": "fixed", "value_s": 36000.0}, "slots": 200_000}
    config = config_from_dict({
        "agent": {"name": "scale", "workdir": str(workdir / "tracker")},
        "database": {"url": url},
        "batch": {"plugin": "emulator", "options": options},
        "components": {"enabled": ["JobTracker"]},
    })
    out: dict[str, Any] = {"active": n}
    try:
        wait_for_database(config)
        now = time.time()
        rows = [{
            "agent": "scale", "name": f"scale-r1-a{i}-0", "job_type": "production", "allocation_id": str(i),
            "request_id": "1", "dataset_id": 1, "state": states.RUNNING, "retry": 0, "max_retries": 3,
            "first_event": i * EVENTS_PER_JOB, "n_events": EVENTS_PER_JOB, "seed": i, "job_index": i,
            "run": 1, "site": "emulator", "workdir": str(workdir / "tracker" / "jobs" / "1" / f"scale-r1-a{i}-0"),
            "batch_id": str(i), "created_at": now, "updated_at": now,
        } for i in range(n)]
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(pa_dataset.insert().values(id=1, agent="scale", name="/Scale/tracker/GEN", tier="GEN",
                                                    request_id="1", merge_policy="{}", created_at=now))
            for i in range(0, n, 10_000):
                conn.execute(pa_job.insert(), rows[i:i + 10_000])
        plugin = JobEmulator(JobEmulatorOptions.model_validate(options), config.workdir)
        jobs = [BatchJob(Layout.batch_name(r["name"], 0), ["true"], Path(r["workdir"]) / "attempt-0") for r in rows]
        for i in range(0, n, 20_000):
            plugin.submit(jobs[i:i + 20_000])
        out["setup_s"] = round(time.perf_counter() - t0, 2)
        del rows, jobs
        with engine.connect() as conn:
            t0 = time.perf_counter()
            store.jobs_in(conn, "scale", states.IN_BATCH)
            out["store_query_full_rows_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            active = store.jobs_in(conn, "scale", states.IN_BATCH, columns=ACTIVE_COLUMNS)
            out["store_query_s"] = round(time.perf_counter() - t0, 3)
        names = [Layout.batch_name(j.name, j.retry) for j in active]
        t0 = time.perf_counter()
        statuses = plugin.query(names)
        out["plugin_query_s"] = round(time.perf_counter() - t0, 3)
        assert len(statuses) == n and all(s.state.value == "running" for s in statuses.values())
        plugin.close()
        service = open_service(config)
        tracker = JobTracker(config, service)
        tracker.setup()
        ticks = []
        for _ in range(3):
            t0 = time.perf_counter()
            service.tx.run(lambda conn: tracker.tick(Context(conn)))
            ticks.append(time.perf_counter() - t0)
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(lambda: service.tx.run(lambda conn: tracker.tick(Context(conn))))
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
            out["tick_profile"] = text.getvalue()
        out["tick_s"] = [round(t, 3) for t in ticks]
        out["tick_best_s"] = round(min(ticks), 3)
        ended = names[::max(1, round(1 / finished_share))] if finished_share > 0 else []
        if ended:
            db = sqlite3.connect(config.workdir / "emulator" / "jobs.sqlite", timeout=60)
            with db:
                db.execute("UPDATE jobs SET start = ?, end = ? WHERE job_id IN (SELECT value FROM json_each(?))",
                           (time.time() - 2, time.time() - 1, json.dumps(ended)))
            db.close()
            # The ended jobs write their reports first, as real jobs do outside the agent (the
            # emulator writes them when first asked about an ended job): timed apart.
            reporter = JobEmulator(JobEmulatorOptions.model_validate(options), config.workdir)
            t0 = time.perf_counter()
            reporter.query(ended)
            out["emulated_reports_s"] = round(time.perf_counter() - t0, 3)
            reporter.close()
            profiler = cProfile.Profile() if profile else None
            t0 = time.perf_counter()
            if profiler:
                profiler.enable()
            service.tx.run(lambda conn: tracker.tick(Context(conn)))
            out["tick_with_finished_s"] = round(time.perf_counter() - t0, 3)
            if profiler:
                profiler.disable()
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(60)
                out["tick_with_finished_profile"] = text.getvalue()
            out["finished"] = len(ended)
            with engine.connect() as conn:
                out["moved_to_success"] = int(conn.execute(sa.select(sa.func.count()).select_from(pa_job)
                                                           .where(pa_job.c.state == states.SUCCESS)).scalar() or 0)
        tracker.teardown()
        service.engine.dispose()
        engine.dispose()
        out["bench_process_rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    finally:
        if not keep:
            drop_database(name)
    return out


# -- main ----------------------------------------------------------------------------------------

def print_result(result: dict[str, Any]) -> None:
    if "jobs_per_s" in result:
        print(f"\n== {result['jobs']} jobs, ProdManager on {result['pm_db']}, agent on MariaDB ==")
        print(f"life cycle (first created -> last {result['final_state']}): {result['life_cycle_s']} s, "
              f"{result['jobs_per_s']} jobs/s   (wall {result['wall_s']} s)")
        print(f"job states: {result['job_states']}")
        print(f"retries: {result['retries']}   merge jobs: {result['merge_jobs']}")
        if "tracker" in result:
            t = result["tracker"]
            print(f"tracker: {t['cycles']} cycles; {t['seconds_at_largest']} s at the largest active count "
                  f"{t['largest_active']}; slowest {t['slowest_s']} s, median {t['median_s']} s")
        print("CPU s: " + ", ".join(f"{k} {v}" for k, v in result.get("cpu_s", {}).items()))
        print("peak RSS MB: " + ", ".join(f"{k} {v}" for k, v in result.get("peak_rss_mb", {}).items()))
        print(f"messages left: {result['messages_left']} {result['messages_by_type']}, "
              f"dead letters: {result['dead_letters']}")
        print(f"request: {result.get('request')}")
    if "tracker_direct" in result:
        t = result["tracker_direct"]
        print(f"tracker cycle over {t['active']} active jobs (direct): store query {t['store_query_s']} s "
              f"(whole rows {t['store_query_full_rows_s']} s), plugin query {t['plugin_query_s']} s, "
              f"whole tick {t['tick_best_s']} s (runs {t['tick_s']}), RSS of this process {t['bench_process_rss_mb']} MB")
        if "tick_with_finished_s" in t:
            print(f"  tick with {t['finished']} of them finished: {t['tick_with_finished_s']} s "
                  f"({t['moved_to_success']} moved to success; their reports written before it in "
                  f"{t['emulated_reports_s']} s)")
        if "tick_profile" in t:
            print(t["tick_profile"])
        if "tick_with_finished_profile" in t:
            print(t["tick_with_finished_profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--pm-db", choices=("mariadb", "sqlite"), default="mariadb")
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--min-s", type=float, default=1.0, help="shortest emulated job")
    parser.add_argument("--max-s", type=float, default=5.0, help="longest emulated job")
    parser.add_argument("--fail-rate", type=float, default=0.05)
    parser.add_argument("--merge-min", type=int, default=50, help="fewest files per merge")
    parser.add_argument("--merge-max", type=int, default=100, help="most files per merge")
    parser.add_argument("--tracker-tick-s", type=float, default=1.0)
    parser.add_argument("--cleanup-io-workers", type=int, help="Cleanup's io_workers (default: its own)")
    parser.add_argument("--tracker-jobs", type=int, default=100_000)
    parser.add_argument("--tracker-finished", type=float, default=0.05,
                        help="share of the active jobs that end before the last direct tick")
    parser.add_argument("--tracker-only", action="store_true", help="only the direct tracker measurement")
    parser.add_argument("--profile", action="store_true", help="profile the direct tick with finished jobs")
    parser.add_argument("--no-tracker", action="store_true", help="skip the direct tracker measurement")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--stall-s", type=float, default=300.0, help="give up when no job moves for this long")
    parser.add_argument("--drain-s", type=float, default=60.0)
    parser.add_argument("--progress-s", type=float, default=10.0)
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory, removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the databases and work directory")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: daemons stopped, databases dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pa-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()}
    try:
        if not args.tracker_only:
            result.update(run_production(args, workdir))
        if not args.no_tracker:
            result["tracker_direct"] = measure_tracker(args.tracker_jobs, workdir, args.tracker_finished, args.keep,
                                                       args.profile)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_result(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
