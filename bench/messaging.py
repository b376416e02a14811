"""Message-service benchmark: publish and consume throughput, and delivery latency.

For each database URL (default: a SQLite file and MariaDB on 127.0.0.1):
  publish_single   one message per transaction, one process              (msgs/s)
  publish_batch    100 messages per transaction (publish_many)           (msgs/s)
  consume_c1/c4    N pre-published messages drained by 1 or 4 component processes running the
                   real ComponentRunner (claim in batches, handle, acknowledge with history) (msgs/s)
  latency          publish -> handler p50/p99 at a steady rate (default 200 msgs/s), 1 consumer,
                   with the default polling settings; also the consumer's CPU share
Each measurement starts from an empty database. Print a line per figure; --json writes them all.

    .venv/bin/python -m bench.messaging [--url URL ...] [--n 20000] [--runs 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from bench.components import PLUGINS
from bench.db import MARIADB_SERVER, create_database, drop_database
from prodagent.config import AgentConfig, config_from_dict
from prodagent.db.schema import ms_process
from prodagent.messaging.message import Outgoing
from prodagent.runtime.runner import (
    ComponentRunner,
    declare_subscriptions,
    open_service,
    wait_for_database,
)


def fresh_database(url: str, workdir: Path) -> str:
    """A new SQLite file, or this process's MariaDB scratch database emptied (dropped at exit)."""
    if url == "sqlite":
        path = workdir / f"bench-{time.time_ns()}.db"
        return f"sqlite:///{path}"
    return create_database(f"pa_bench_{os.getpid()}", url.rsplit("/", 1)[0])


def make_config(db_url: str, workdir: Path, **messaging: Any) -> AgentConfig:
    return config_from_dict({
        "agent": {"name": "bench", "workdir": str(workdir)},
        "database": {"url": db_url},
        "messaging": messaging,
        "components": {"enabled": ["BenchConsumer", "BenchSink"], "plugins": PLUGINS},
    })


def prepare(url: str, workdir: Path, **messaging: Any) -> AgentConfig:
    config = make_config(fresh_database(url, workdir), workdir, **messaging)
    wait_for_database(config)
    service = open_service(config)
    declare_subscriptions(config, service)
    service.engine.dispose()
    return config


def _consumer(config: AgentConfig, latency_file: str | None) -> None:
    if latency_file:
        os.environ["BENCH_LATENCY_FILE"] = latency_file
    runner = ComponentRunner(config, "BenchConsumer")
    runner.install_signal_handlers()
    runner.run()


def measure_publish(config: AgentConfig, n: int, per_tx: int) -> float:
    service = open_service(config)
    payload = {"job_ids": list(range(10)), "note": "x" * 100}
    start = time.perf_counter()
    for i in range(0, n, per_tx):
        batch = [Outgoing("BenchPublish", payload) for _ in range(min(per_tx, n - i))]
        service.tx.run(lambda conn, b=batch: service.publish_many(conn, b))
    elapsed = time.perf_counter() - start
    service.engine.dispose()
    return n / elapsed


def start_consumers(config: AgentConfig, count: int, latency_file: str | None = None) -> list[mp.Process]:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_consumer, args=(config, latency_file)) for _ in range(count)]
    for p in procs:
        p.start()
    engine = sa.create_engine(config.db_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(ms_process).where(
                    ms_process.c.component == "BenchConsumer", ms_process.c.stopped_at.is_(None))).scalar() >= count:
                break
        time.sleep(0.05)
    engine.dispose()
    return procs


def server_process() -> psutil.Process | None:
    """The local MariaDB server, to charge its CPU time to the measurement (None if not local)."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld"):
            return proc
    return None


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def stop_consumers(procs: list[mp.Process]) -> None:
    for p in procs:
        if p.pid:
            os.kill(p.pid, 15)
    for p in procs:
        p.join(30)


def measure_consume(url: str, workdir: Path, n: int, consumers: int, history: bool = True) -> dict[str, float]:
    config = prepare(url, workdir, poll_max_s=0.02, history=history)
    procs = start_consumers(config, consumers)
    service = open_service(config)
    payload = {"job_ids": list(range(10)), "note": "x" * 100}
    # Every message falls due at one moment after the publishing ends, so the consumers see the
    # whole queue together (no UPDATE to release them: that would leave the claim index full of
    # old versions for the server to purge while it is being measured).
    due = time.time() + 2.0 + n / 10000
    for i in range(0, n, 5000):
        delay = due - time.time()
        batch = [Outgoing("BenchWork", payload, delay=delay) for _ in range(min(5000, n - i))]
        service.tx.run(lambda conn, b=batch: service.publish_many(conn, b))
    if time.time() > due:
        raise RuntimeError("publishing took longer than the time allowed for it; measure with a smaller --n")
    time.sleep(due - time.time())
    clients = [psutil.Process(p.pid) for p in procs]
    server = [s] if (s := server_process()) and url != "sqlite" else []
    client0, server0 = cpu_seconds(clients), cpu_seconds(server)
    start = time.perf_counter()
    # A cheap probe (not COUNT(*), which scans the table and would load the server it measures).
    probe = sa.text("SELECT id FROM ms_message LIMIT 1")
    while True:
        with service.engine.connect() as conn:
            left = conn.execute(probe).first()
        if left is None:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    client_cpu, server_cpu = cpu_seconds(clients) - client0, cpu_seconds(server) - server0
    stop_consumers(procs)
    service.engine.dispose()
    return {"msgs_per_s": n / elapsed, "seconds": elapsed,
            "client_cpu_us": client_cpu / n * 1e6, "server_cpu_us": server_cpu / n * 1e6 if server else None}


def measure_latency(url: str, workdir: Path, rate: float, seconds: float) -> dict[str, float]:
    config = prepare(url, workdir)  # default polling settings
    latency_file = str(workdir / f"latency-{time.time_ns()}.json")
    procs = start_consumers(config, 1, latency_file)
    service = open_service(config)
    proc = psutil.Process(procs[0].pid)
    cpu0 = sum(proc.cpu_times()[:2])
    interval = 1.0 / rate
    count = int(rate * seconds)
    start = time.perf_counter()
    for i in range(count):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        service.send("BenchPing", {"sent_at": time.time()})
    wall = time.perf_counter() - start
    time.sleep(1.0)
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    stop_consumers(procs)
    service.engine.dispose()
    latencies = sorted(json.loads(Path(latency_file).read_text()))
    ms = [x * 1000 for x in latencies]
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(len(ms) * 0.99) - 1],
        "delivered": len(ms), "sent": count,
        "achieved_rate": count / wall,
        "consumer_cpu_share": cpu / (wall + 1.0),
    }


def _measure_all(args: argparse.Namespace, urls: list[str], workdir: Path, results: list[dict[str, Any]]) -> None:
    for run in range(args.runs):
        for url in urls:
            backend = "sqlite" if url == "sqlite" else "mariadb"

            def record(name: str, value: float, unit: str, run: int = run, backend: str = backend, **extra: Any) -> None:
                row = {"run": run, "backend": backend, "measure": name, "value": round(value, 2), "unit": unit, **extra}
                results.append(row)
                print(f"{backend:8} run {run} {name:16} {value:12.1f} {unit} {extra or ''}", flush=True)

            config = prepare(url, workdir)
            record("publish_single", measure_publish(config, min(args.n, 3000), 1), "msgs/s")
            config = prepare(url, workdir)
            record("publish_batch", measure_publish(config, args.n, 100), "msgs/s")
            for consumers in (1, 4):
                out = measure_consume(url, workdir, args.n, consumers, history=not args.no_history)
                record(f"consume_c{consumers}", out["msgs_per_s"], "msgs/s",
                       client_cpu_us_per_msg=round(out["client_cpu_us"], 1),
                       server_cpu_us_per_msg=out["server_cpu_us"] and round(out["server_cpu_us"], 1))
            lat = measure_latency(url, workdir, args.rate, args.latency_seconds)
            record("latency_p50", lat["p50_ms"], "ms", rate=round(lat["achieved_rate"], 1))
            record("latency_p99", lat["p99_ms"], "ms", cpu_share=round(lat["consumer_cpu_share"], 3),
                   delivered=lat["delivered"], sent=lat["sent"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", help="'sqlite' or a MariaDB URL (repeatable)")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--no-history", action="store_true", help="consume with messaging.history off")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    urls = args.url or ["sqlite", f"{MARIADB_SERVER}/bench"]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp:
        try:
            _measure_all(args, urls, Path(tmp), results)
        finally:
            for url in urls:
                if url != "sqlite":
                    drop_database(f"pa_bench_{os.getpid()}", url.rsplit("/", 1)[0])
    print("SUMMARY (median over runs)")
    for key in sorted({(r["backend"], r["measure"]) for r in results}):
        values = [r["value"] for r in results if (r["backend"], r["measure"]) == key]
        unit = next(r["unit"] for r in results if (r["backend"], r["measure"]) == key)
        print(f"  {key[0]:8} {key[1]:16} {statistics.median(values):12.1f} {unit}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
