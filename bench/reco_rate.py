"""Reconstruction rate beside the generator's, on the same events, in the same run.

Generates `--events` events with the production transformation (Pythia, minbias or hardqcd),
then reconstructs that file with the reconstruct transformation (uproot + FastJet anti-kt),
each `--repeat` times as the job wrapper would run it (a fresh process). Prints and writes
(`--json`) for each: the median wall time, the events/s it gives (startup included) and the
events/s the payload itself prints for its event loop (reconstruct only), and the ratio
reconstruction / generation.

    .venv/bin/python -m bench.reco_rate [--events 2000] [--process minbias] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.monotonic() - start, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reco_rate")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--process", choices=("minbias", "hardqcd"), default="minbias")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="reco_rate_") as tmp:
        gen_file, reco_file = Path(tmp) / "gen.root", Path(tmp) / "mdst.root"
        gen_walls, reco_walls, loop_rates = [], [], []
        for i in range(args.repeat):
            wall, _ = timed([py, "-m", "prodagent.payload.generate", "--events", str(args.events),
                             "--seed", str(i + 1), "--process", args.process, "--out", str(gen_file)])
            gen_walls.append(wall)
            wall, out = timed([py, "-m", "prodagent.payload.reconstruct", "--out", str(reco_file),
                               "--hist", str(Path(tmp) / "h.root"), "--dump", str(Path(tmp) / "d.txt"),
                               "--", str(gen_file)])
            reco_walls.append(wall)
            found = re.search(r"\((\d+) events/s\)", out)
            loop_rates.append(float(found.group(1)) if found else 0.0)
    gen_s, reco_s = statistics.median(gen_walls), statistics.median(reco_walls)
    result: dict[str, Any] = {
        "events": args.events, "process": args.process, "repeat": args.repeat,
        "generate": {"median_wall_s": round(gen_s, 3), "events_per_s": round(args.events / gen_s, 1)},
        "reconstruct": {"median_wall_s": round(reco_s, 3), "events_per_s": round(args.events / reco_s, 1),
                        "loop_events_per_s": statistics.median(loop_rates)},
        "reco_over_gen": round(gen_s / reco_s, 2),
    }
    print(f"generate    {args.events} {args.process} events: median {gen_s:.2f} s "
          f"= {result['generate']['events_per_s']} events/s (process start included)")
    print(f"reconstruct {args.events} events: median {reco_s:.2f} s "
          f"= {result['reconstruct']['events_per_s']} events/s (process start included), "
          f"event loop {result['reconstruct']['loop_events_per_s']:.0f} events/s")
    print(f"reconstruction is {result['reco_over_gen']}x the generator's rate")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
