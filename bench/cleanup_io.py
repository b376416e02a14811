"""Cleanup's disk work per job, sequential against a thread pool: CPU and wall per work area.

Each round makes `--jobs` work areas shaped like an emulated production job's (job.json,
report.json, batch.out, job.log in attempt-0) and an unmerged output each, then retires them
the way Cleanup does (`WorkArea.read`, `write_archive`, `WorkArea.remove`, `remove_file`):
with `io_workers` 1 (in the calling thread) and with a pool of `--pool` threads, alternately,
`--rounds` times each. Prints the median CPU (user + system, this process) and wall per job of
each, and the ratio of the pool's to the sequential figure.

    .venv/bin/python -m bench.cleanup_io [--jobs 2000] [--pool 8] [--rounds 3] [--dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prodagent.components.cleanup import WorkArea, remove_file, write_archive

FILES = {"job.json": 505, "report.json": 868, "batch.out": 84, "job.log": 84}


def make(base: Path, jobs: int) -> None:
    (base / "data").mkdir(parents=True)
    for i in range(jobs):
        attempt = base / "jobs" / f"job{i}" / "attempt-0"
        attempt.mkdir(parents=True)
        for name, size in FILES.items():
            (attempt / name).write_text("x" * size)
        (base / "data" / f"job{i}.root").write_bytes(b"r" * 2000)


def retire(base: Path, i: int) -> int:
    tree = WorkArea.read(base / "jobs" / f"job{i}")
    assert tree is not None
    write_archive(tree, base / "archive" / f"job{i}.tar.gz")
    tree.remove()
    return tree.size + remove_file(base / "data" / f"job{i}.root")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_round(base: Path, jobs: int, workers: int) -> tuple[float, float]:
    make(base, jobs)
    cpu0, wall0 = cpu_s(), time.perf_counter()
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            freed = sum(pool.map(lambda i: retire(base, i), range(jobs)))
    else:
        freed = sum(retire(base, i) for i in range(jobs))
    cpu, wall = cpu_s() - cpu0, time.perf_counter() - wall0
    assert freed == jobs * (sum(FILES.values()) + 2000) and not any((base / "jobs").iterdir())
    shutil.rmtree(base)
    return 1000 * cpu / jobs, 1000 * wall / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where the work areas are made (default: the temporary directory)")
    parser.add_argument("--json")
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"sequential": [], "pool": []}
    with tempfile.TemporaryDirectory(prefix="pa-cleanup-io-", dir=args.dir) as tmp:
        for _ in range(args.rounds):
            figures["sequential"].append(one_round(Path(tmp) / "s", args.jobs, 1))
            figures["pool"].append(one_round(Path(tmp) / "p", args.jobs, args.pool))
    result = {}
    for name, rounds in figures.items():
        result[name] = {"cpu_ms_per_job": round(statistics.median(c for c, _ in rounds), 3),
                        "wall_ms_per_job": round(statistics.median(w for _, w in rounds), 3)}
        print(f"{name:10s} CPU {result[name]['cpu_ms_per_job']:.3f} ms/job, wall {result[name]['wall_ms_per_job']:.3f} ms/job"
              f"   (median of {args.rounds})")
    for key in ("cpu_ms_per_job", "wall_ms_per_job"):
        result[f"pool_over_sequential_{key}"] = round(result["pool"][key] / result["sequential"][key], 2)
    print(f"pool of {args.pool} / sequential: CPU {result['pool_over_sequential_cpu_ms_per_job']:.2f}x, "
          f"wall {result['pool_over_sequential_wall_ms_per_job']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
