"""The local executor's on-disk state: queue, running slots, results, and the scheduling pass.

Everything lives under one spool directory so that any process (the submitter, the tracker, a
job's launcher) can take over after another one died:

    lock                    fcntl lock around every change of queue or slots
    config.json             slots and limits, written by the plugin
    seq                     last batch id handed out
    jobs/<key>.json         the job as submitted (command, workdir, env, limits, seq)
    queue/<seq>-<key>       empty file per queued job; names sort in submission order
    running/<key>           "pid create_time" of the job's launcher ("" while it is spawned)
    started/<key>.json      written by the launcher: its pid, the payload's pid and group
    results/<key>.json      how the job ended (written once, atomically)
    kill/<key>              the agent asked to kill this job

A job's state is read from which of these files exist, so a query costs a few stat calls per id.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from prodagent.batch.files import file_key, read_json, write_json_atomic

LAUNCHER_MODULE = "prodagent.batch.local_launcher"


class Spool:
    """Paths and operations of one local-executor spool directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("jobs", "queue", "running", "started", "results", "kill"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # ---- paths -------------------------------------------------------------------------------
    def spec_path(self, key: str) -> Path:
        return self.root / "jobs" / f"{key}.json"

    def queue_path(self, seq: int, key: str) -> Path:
        return self.root / "queue" / f"{seq:012d}-{key}"

    def running_path(self, key: str) -> Path:
        return self.root / "running" / key

    def started_path(self, key: str) -> Path:
        return self.root / "started" / f"{key}.json"

    def result_path(self, key: str) -> Path:
        return self.root / "results" / f"{key}.json"

    def kill_path(self, key: str) -> Path:
        return self.root / "kill" / key

    @staticmethod
    def key(job_id: str) -> str:
        return file_key(job_id)

    # ---- configuration and lock ----------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        if read_json(self.root / "config.json") != config:
            write_json_atomic(self.root / "config.json", config)

    def config(self) -> dict[str, Any]:
        return read_json(self.root / "config.json") or {"slots": os.cpu_count() or 1}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def next_seq(self, count: int) -> int:
        """Reserve `count` batch ids; returns the first. Call under the lock."""
        path = self.root / "seq"
        try:
            last = int(path.read_text() or 0)
        except FileNotFoundError:
            last = 0
        path.write_text(str(last + count))
        return last + 1

    # ---- scheduling ----------------------------------------------------------------------------
    def schedule(self) -> list[subprocess.Popen[bytes]]:
        """Reap dead launchers and start queued jobs into free slots. Call under the lock.

        Returns the launcher processes started, for the caller to reap.
        """
        alive = 0
        for entry in os.listdir(self.root / "running"):
            if launcher_alive(self.running_path(entry)):
                alive += 1
            else:
                self._bury(entry)
        free = int(self.config().get("slots", 1)) - alive
        if free <= 0:
            return []
        started = []
        for entry in sorted(os.listdir(self.root / "queue"))[:free]:
            key = entry.split("-", 1)[1]
            # Claim the slot before leaving the queue so a reader always finds the job somewhere.
            self.running_path(key).write_text("")
            os.unlink(self.root / "queue" / entry)
            proc = spawn_launcher(self.root, key)
            create_time = psutil.Process(proc.pid).create_time()
            self.running_path(key).write_text(f"{proc.pid} {create_time}")
            started.append(proc)
        return started

    def _bury(self, key: str) -> None:
        """A launcher that is gone: keep its result, or record the job as lost."""
        if not self.result_path(key).exists():
            write_json_atomic(
                self.result_path(key),
                {"state": "lost", "reason": "the job's launcher died without recording a result"},
            )
            started = read_json(self.started_path(key))
            if started:
                kill_group(started.get("pid"), started.get("create_time"), signal.SIGKILL)
        self.running_path(key).unlink(missing_ok=True)

    def queued_count(self) -> int:
        return len(os.listdir(self.root / "queue"))

    def running_count(self) -> int:
        return len(os.listdir(self.root / "running"))


def spawn_launcher(root: Path, key: str) -> subprocess.Popen[bytes]:
    """Start the detached launcher of one job in its own session (it outlives the caller)."""
    with open(root / "launcher.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", LAUNCHER_MODULE, str(root), key],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """True when `pid` runs and is the same process (same start time), not a zombie."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def launcher_alive(running_file: Path) -> bool:
    try:
        text = running_file.read_text().split()
    except FileNotFoundError:
        return False
    if len(text) != 2:
        return False
    return process_alive(int(text[0]), float(text[1]))


def kill_group(pid: int | None, create_time: float | None, sig: int) -> bool:
    """Signal the process group led by `pid` if that process is still the one recorded."""
    if not process_alive(pid, create_time):
        return False
    try:
        os.killpg(int(pid or 0), sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def now() -> float:
    return time.time()
