"""Benchmark of stage-out to XRootD: the job wrapper's stage-out (verified put: adler32 at the
source, compared with the server's adler32 of the written file, then a rename) beside `xrdcp`
of the same files to the same server, in the same run, as a ratio of throughputs.

    .venv/bin/python bench/stageout.py                          # 1 MB x 50 and 100 MB x 3, 3 rounds
    .venv/bin/python bench/stageout.py --rounds 5 --json bench/results/stageout.json
    .venv/bin/python bench/stageout.py --url root://host:port   # a running server with a /disk area

A round copies every file of a size once with each tool, in alternating order; the figures are
medians over the rounds. `xrdcp` runs once per round with all the files of the round (one process,
as a wrapper would call it for a job's outputs), without a checksum check; the stage-out is
`prodagent.storage.transfer.stage_out` in this process, one file after another, checksum on.
Without --url a server of its own is started with scripts/xrootd.sh on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prodagent.storage.base import ElementSpec  # noqa: E402
from prodagent.storage.registry import open_element  # noqa: E402
from prodagent.storage.settings import StageOutPolicy  # noqa: E402
from prodagent.storage.transfer import Destination, StageOutSpec, stage_out  # noqa: E402

MB = 1 << 20


def start_server() -> tuple[str, Path, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = Path(tempfile.mkdtemp(prefix="pa-bench-xrootd-"))
    done = subprocess.run([str(ROOT / "scripts" / "xrootd.sh"), "start", str(port), str(directory)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cannot start XRootD: {done.stderr.strip()}")
    return done.stdout.strip(), directory, port


def make_files(directory: Path, size: int, count: int) -> list[Path]:
    files = []
    for i in range(count):
        path = directory / f"f{size // MB}mb-{i}.root"
        with open(path, "wb") as out:
            left = size
            while left:
                block = os.urandom(min(left, 16 * MB))
                out.write(block)
                left -= len(block)
        files.append(path)
    return files


def run_xrdcp(url: str, files: list[Path], area: str) -> float:
    subprocess.run(["xrdfs", url, "mkdir", "-p", f"/disk/{area}"], check=True)  # several sources: a directory
    started = time.perf_counter()
    subprocess.run(["xrdcp", "--force", "--silent", *map(str, files), f"{url}//disk/{area}/"], check=True)
    return time.perf_counter() - started


def run_stageout(url: str, files: list[Path], area: str) -> float:
    element = ElementSpec(plugin="xrootd", pfn=f"{url}//disk/{area}/{{lfn}}")
    started = time.perf_counter()
    for path in files:
        spec = StageOutSpec(lfn=f"bench/{path.name}", by_site={"*": Destination(name="disk", element=element)},
                            policy=StageOutPolicy(attempts=1))
        stage_out(spec, path)
    return time.perf_counter() - started


def clean(url: str, area: str) -> None:
    """Remove what a round wrote (both tools write under /disk/<area>)."""
    element = open_element(ElementSpec(plugin="xrootd", pfn=f"{url}//disk/{{lfn}}"))
    for lfn in list(element.list(area)):
        element.delete(lfn)


def measure(url: str, files: list[Path], rounds: int) -> dict[str, Any]:
    total = sum(p.stat().st_size for p in files)
    times: dict[str, list[float]] = {"xrdcp": [], "stageout": []}
    for r in range(rounds):
        order = ["xrdcp", "stageout"] if r % 2 == 0 else ["stageout", "xrdcp"]
        for tool in order:
            area = f"bench-{uuid.uuid4().hex[:8]}"
            seconds = (run_xrdcp if tool == "xrdcp" else run_stageout)(url, files, area)
            times[tool].append(seconds)
            clean(url, area)
    result: dict[str, Any] = {"files": len(files), "bytes": total, "rounds": rounds}
    for tool, values in times.items():
        median = statistics.median(values)
        result[tool] = {"median_s": round(median, 4), "mb_per_s": round(total / MB / median, 1),
                        "files_per_s": round(len(files) / median, 2), "runs_s": [round(v, 4) for v in values]}
    result["ratio"] = round(result["stageout"]["mb_per_s"] / result["xrdcp"]["mb_per_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="root://host:port of a running server with a writable /disk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=50, help="how many 1 MB files")
    parser.add_argument("--large", type=int, default=3, help="how many 100 MB files")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if shutil.which("xrdcp") is None:
        sys.exit("xrdcp not found: run scripts/xrootd.sh install")
    server_dir = None
    url = args.url
    if url is None:
        url, server_dir, port = start_server()
    scratch = Path(tempfile.mkdtemp(prefix="pa-bench-stageout-"))
    figures: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count(), "url": url, "sizes": {}}
    try:
        for label, size, count in (("1MB", MB, args.small), ("100MB", 100 * MB, args.large)):
            files = make_files(scratch, size, count)
            figures["sizes"][label] = result = measure(url, files, args.rounds)
            print(f"{label:>6} x {count:<3} xrdcp {result['xrdcp']['mb_per_s']:8.1f} MB/s "
                  f"{result['xrdcp']['files_per_s']:8.2f} files/s | stage-out (adler32 verified) "
                  f"{result['stageout']['mb_per_s']:8.1f} MB/s {result['stageout']['files_per_s']:8.2f} files/s"
                  f" | ratio {result['ratio']:.2f}", flush=True)
            for path in files:
                path.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if server_dir is not None:
            subprocess.run([str(ROOT / "scripts" / "xrootd.sh"), "stop", str(port), str(server_dir)])
            shutil.rmtree(server_dir, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
