"""How long an agent takes to come up and to stop, and what its start costs in CPU.

A `prodmanager serve` on SQLite and an agent with every default component on SQLite (the test
suite's stacks); `prodAgentd start` and `prodAgentd stop` timed from outside, `--runs` times, and
the CPU seconds of the component processes once up (they were forked from `prodAgentd start`,
so the imports they share are paid once, by it). Prints medians; `--json FILE` writes them.

    .venv/bin/python -m bench.agent_start [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.runtime import pidfiles


def one_run(tmp: Path) -> dict[str, float]:
    manager = Manager(tmp / "pm", f"sqlite:///{tmp / 'pm' / 'pm.db'}", lease_s=120)
    manager.start()
    try:
        agent = AgentProcesses(write_agent_config(tmp / "agent.yaml", tmp / "agent", manager))
        t0 = time.perf_counter()
        agent.start()
        start_s = time.perf_counter() - t0
        cpu = 0.0
        for name in agent.config.components.enabled:
            state = pidfiles.read_pid(agent.config, name)
            if state.pid and state.alive:
                times = psutil.Process(state.pid).cpu_times()
                cpu += times.user + times.system
        t0 = time.perf_counter()
        agent.stop()
        stop_s = time.perf_counter() - t0
    finally:
        manager.stop()
    return {"start_s": start_s, "stop_s": stop_s, "components_cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(Path(tmp)))
    result = {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
    result["runs"] = args.runs
    print(f"agent start {result['start_s']} s, stop {result['stop_s']} s, CPU of the components once up "
          f"{result['components_cpu_s']} s (medians of {args.runs} runs)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
