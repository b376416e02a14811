"""The local executor's per-job launcher: a detached process that runs one job to its end.

Started by `local_spool.Spool.schedule` in a session of its own, so it survives the agent
process that started it. It runs the command in the job's work directory (stdout and stderr
to batch.out / batch.err there) in a process group of its own, enforces the kill request and the
time (and optionally memory) limit, records exit code and rusage atomically, then frees its
slot and starts the next queued jobs.

    python -m prodagent.batch.local_launcher SPOOL_DIR KEY
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from prodagent.batch.files import read_json, write_json_atomic
from prodagent.batch.local_spool import Spool, kill_group
from prodagent.batch.runner import result_from_wait

POLL_S = 0.2
MEMORY_POLL_S = 1.0


class Watchdog(threading.Thread):
    """Stops the payload's process group on a kill request, time limit or memory limit."""

    def __init__(self, spool: Spool, key: str, spec: dict[str, Any], proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.spool, self.key, self.spec, self.proc = spool, key, spec, proc
        self.create_time = proc.create_time()
        self.reason: str | None = None
        self.finished = threading.Event()
        self._term_at: float | None = None

    def _stop(self, reason: str, sig: int = signal.SIGTERM) -> None:
        if self.reason is None:
            self.reason = reason
        kill_group(self.proc.pid, self.create_time, sig)
        if sig == signal.SIGTERM and self._term_at is None:
            self._term_at = time.monotonic()

    def _rss_mb(self) -> float:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs) / 2**20
        except psutil.Error:
            return 0.0

    def run(self) -> None:
        started = time.monotonic()
        next_memory_check = started
        grace = float(self.spec.get("kill_grace_s", 5.0))
        while not self.finished.wait(POLL_S):
            now = time.monotonic()
            if self._term_at is not None and now - self._term_at > grace:
                kill_group(self.proc.pid, self.create_time, signal.SIGKILL)
            elif self.spool.kill_path(self.key).exists():
                self._stop("cancelled")
            elif now - started > float(self.spec.get("time_s") or 1e12):
                self._stop("timeout")
            elif self.spec.get("enforce_memory") and now >= next_memory_check:
                next_memory_check = now + MEMORY_POLL_S
                if self._rss_mb() > float(self.spec.get("memory_mb") or 1e12):
                    self._stop("out_of_memory", signal.SIGKILL)


def run_job(spool: Spool, key: str) -> dict[str, Any]:
    """Run the job to its end and return the result record."""
    spec = read_json(spool.spec_path(key))
    if spec is None:
        return {"state": "lost", "reason": "job description missing from the spool"}
    if spool.kill_path(key).exists():
        return {"state": "cancelled", "reason": "killed before it started"}
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        with open(workdir / "batch.out", "wb") as out, open(workdir / "batch.err", "wb") as err:
            proc = subprocess.Popen(
                spec["command"],
                cwd=workdir,
                env={**os.environ, **spec.get("env", {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                process_group=0,
            )
    except OSError as exc:
        return {"state": "done", "exit_code": 127, "reason": f"cannot start: {exc}"}
    ps = psutil.Process(proc.pid)
    write_json_atomic(
        spool.started_path(key),
        {
            "launcher_pid": os.getpid(),
            "pid": proc.pid,
            "create_time": ps.create_time(),
            "started": started,
        },
    )
    watchdog = Watchdog(spool, key, spec, ps)
    watchdog.start()
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    proc.returncode = status
    watchdog.finished.set()
    # Leftover background processes of the payload go with it, as in a batch system.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    result = asdict(result_from_wait(status, usage, started))
    # kill() signals the payload itself, possibly before the watchdog saw the request.
    cancelled = "cancelled" if spool.kill_path(key).exists() else None
    result["state"] = watchdog.reason or cancelled or "done"
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spool, key = Spool(Path(args[0])), args[1]
    try:
        result = run_job(spool, key)
    except Exception as exc:  # noqa: BLE001 - record any launcher failure as the job's end
        result = {"state": "lost", "reason": f"launcher error: {exc.__class__.__name__}: {exc}"}
    write_json_atomic(spool.result_path(key), result)
    with spool.locked():
        spool.running_path(key).unlink(missing_ok=True)
        spool.schedule()
    return 0


if __name__ == "__main__":
    sys.exit(main())
