"""The JobEmulator's worker nodes: one process per emulator directory that writes each emulated
job's results (logs, output, report.json) once its drawn end time has passed, as a real job's
wrapper does on its node, so that no agent process does the jobs' own work
(`reports_by: nodes`).

Started by the plugin when it has jobs to report for and no node process holds the directory's
lock (`nodes.lock`); it stops once nothing is left to write for `nodes_idle_s`. If it is not running,
or is slow, nothing hangs: the plugin writes a job's results itself once the job ended more than
`nodes_grace_s` ago.

    python -m prodagent.batch.emulator_nodes WORKDIR OPTIONS_JSON
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from prodagent.batch.emulator import JobEmulatorOptions

RECHECK_S = 5.0  # a plugin checks that the process runs at most this often
POLL_S = 0.2
BATCH = 2000  # results written per round, oldest end first


def _lock_path(workdir: Path) -> Path:
    return workdir / "emulator" / "nodes.lock"


def _try_lock(workdir: Path) -> TextIO | None:
    """The directory's node lock, held by the returned file; None if another process holds it."""
    path = _lock_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def ensure_running(workdir: Path, options: JobEmulatorOptions) -> None:
    """Start the node process for `workdir` unless one runs (a racing second one exits at once)."""
    probe = _try_lock(workdir)
    if probe is None:
        return
    probe.close()  # free: start one (it takes the lock itself)
    log = (workdir / "emulator" / "nodes.log").open("ab")
    with log:
        subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            [sys.executable, "-m", "prodagent.batch.emulator_nodes", str(workdir), options.model_dump_json()],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def run(workdir: Path, options: JobEmulatorOptions) -> None:
    from prodagent.batch.base import BatchState
    from prodagent.batch.emulator import JobEmulator, _status

    lock = _try_lock(workdir)
    if lock is None:
        return  # another node process has the directory
    print(f"emulator nodes for {workdir}: pid {os.getpid()}", flush=True)
    emulator = JobEmulator(options, workdir)
    idle_since = time.monotonic()
    try:
        while True:
            now = time.time()
            due = emulator.db.unreported(now, BATCH)
            if due:  # results only for jobs the batch system calls done (not killed, lost or failed)
                emulator.write_results([r for r in due if _status(r, now).state is BatchState.DONE])
                emulator.db.mark_reported([r.job_id for r in due])
                idle_since = time.monotonic()
                continue
            if emulator.db.pending():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > options.nodes_idle_s:
                return
            time.sleep(POLL_S)
    finally:
        emulator.close()
        lock.close()


def main() -> None:
    from prodagent.batch.emulator import JobEmulatorOptions

    run(Path(sys.argv[1]), JobEmulatorOptions.model_validate_json(sys.argv[2]))


if __name__ == "__main__":
    main()
