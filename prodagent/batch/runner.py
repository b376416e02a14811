"""Run one command, wait for it, and record how it ended in a JSON file.

Used inside batch jobs (the Slurm job script execs it) so that exit code, wall and CPU time and
peak memory are known without the batch system's accounting database:

    python -m prodagent.batch.runner RESULT_FILE -- ARGV...

It exits with the command's exit code (128 + signal when the command was killed by a signal).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from prodagent.batch.files import write_json_atomic


@dataclass(frozen=True)
class RunResult:
    """How a command ended. `signal` is set when it was killed by one."""

    exit_code: int
    signal: int | None
    started: float
    ended: float
    wall_s: float
    cpu_s: float
    max_rss_mb: float


def result_from_wait(status: int, usage: resource.struct_rusage, started: float) -> RunResult:
    """Build a result from os.wait4's status and rusage (ru_maxrss is in KiB on Linux)."""
    ended = time.time()
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = 128 + sig if sig is not None else os.WEXITSTATUS(status)
    return RunResult(
        exit_code=code,
        signal=sig,
        started=started,
        ended=ended,
        wall_s=round(ended - started, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        max_rss_mb=round(usage.ru_maxrss / 1024, 1),
    )


def run(argv: Sequence[str], result_file: Path) -> RunResult:
    """Run argv in the current directory with inherited stdio, record the result, return it."""
    started = time.time()
    try:
        proc = subprocess.Popen(list(argv))
    except OSError as exc:
        print(f"prodagent runner: cannot start {argv[0]!r}: {exc}", file=sys.stderr)
        result = RunResult(127, None, started, time.time(), 0.0, 0.0, 0.0)
        write_json_atomic(result_file, asdict(result))
        return result
    # Forward a polite stop (scancel sends SIGTERM to the whole step) without dying first.
    signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    proc.returncode = status
    result = result_from_wait(status, usage, started)
    write_json_atomic(result_file, asdict(result))
    return result


def main(args: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if args is None else args)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m prodagent.batch.runner RESULT_FILE -- ARGV...", file=sys.stderr)
        return 2
    return run(args[2:], Path(args[0])).exit_code


if __name__ == "__main__":
    sys.exit(main())
