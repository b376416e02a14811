"""LocalExecutor: the embedded default engine, running jobs as child processes on this machine.

All state is in a spool directory (`<workdir>/local-executor/`, see `local_spool`), so the
submitter and the tracker (separate processes, each with its own instance) share it and either
may be killed at any time. Each running job has a detached launcher (`local_launcher`) that
records its end and starts the next queued job; submit and query also start queued jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from prodagent.batch.base import (
    BatchJob,
    BatchPlugin,
    BatchState,
    BatchStatus,
    PluginOptions,
    SiteSlots,
)
from prodagent.batch.files import read_json, write_json_atomic
from prodagent.batch.local_spool import Spool, kill_group

# How a launcher's result record maps to a batch state and error class.
_FINAL: dict[str, tuple[BatchState, str | None]] = {
    "done": (BatchState.DONE, None),
    "cancelled": (BatchState.FAILED, "CANCELLED"),
    "timeout": (BatchState.FAILED, "TIMEOUT"),
    "out_of_memory": (BatchState.FAILED, "OUT_OF_MEMORY"),
    "lost": (BatchState.LOST, None),
}


class LocalExecutorOptions(PluginOptions):
    slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    site: str = "local"
    enforce_memory: bool = False  # kill a job whose process tree's RSS exceeds memory_mb
    kill_grace_s: float = Field(default=5.0, ge=0)  # SIGTERM, then SIGKILL after this


class LocalExecutor(BatchPlugin):
    name = "local"
    Options = LocalExecutorOptions

    def __init__(self, options: PluginOptions, workdir: Path) -> None:
        super().__init__(options, workdir)
        self.opts: LocalExecutorOptions = options  # type: ignore[assignment]
        self.spool = Spool(workdir / "local-executor")
        self.spool.write_config({"slots": self.opts.slots})
        self._children: list[subprocess.Popen[bytes]] = []

    # ---- helpers -------------------------------------------------------------------------------
    def _schedule(self) -> None:
        with self.spool.locked():
            self._children.extend(self.spool.schedule())
        # Launchers we started are our children until they exit: reap the finished ones.
        self._children = [p for p in self._children if p.poll() is None]

    def _spec(self, job: BatchJob, seq: int) -> dict[str, Any]:
        return {
            "job_id": job.job_id,
            "seq": seq,
            "command": list(job.command),
            "workdir": str(job.workdir),
            "env": dict(job.env),
            "memory_mb": job.memory_mb,
            "time_s": job.time_s,
            "enforce_memory": self.opts.enforce_memory,
            "kill_grace_s": self.opts.kill_grace_s,
        }

    def _active_seq(self, key: str) -> int | None:
        """The batch id of a job that is queued or running, else None."""
        spec = read_json(self.spool.spec_path(key))
        if spec is None or self.spool.result_path(key).exists():
            return None
        return int(spec["seq"])

    # ---- BatchPlugin -----------------------------------------------------------------------------
    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        accepted: dict[str, str] = {}
        with self.spool.locked():
            seq = self.spool.next_seq(len(jobs))
            for job in jobs:
                key = self.spool.key(job.job_id)
                active = self._active_seq(key)
                if active is not None:  # already queued or running: never run it twice
                    accepted[job.job_id] = str(active)
                    continue
                for stale in (
                    self.spool.result_path(key),
                    self.spool.started_path(key),
                    self.spool.kill_path(key),
                ):
                    stale.unlink(missing_ok=True)
                write_json_atomic(self.spool.spec_path(key), self._spec(job, seq))
                self.spool.queue_path(seq, key).touch()
                accepted[job.job_id] = str(seq)
                seq += 1
            self._children.extend(self.spool.schedule())
        return accepted

    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        self._schedule()
        return {job_id: self._status(job_id) for job_id in job_ids}

    def _status(self, job_id: str) -> BatchStatus:
        key = self.spool.key(job_id)
        spec = read_json(self.spool.spec_path(key))
        if spec is None:
            return BatchStatus(job_id, BatchState.LOST, reason="unknown to the local executor")
        batch_id = str(spec["seq"])
        # A job only moves queue -> running -> result; look twice to not miss it in transit.
        for _ in range(2):
            result = read_json(self.spool.result_path(key))
            if result is not None:
                return _final_status(job_id, batch_id, result)
            if self.spool.running_path(key).exists():
                return BatchStatus(job_id, BatchState.RUNNING, batch_id)
            if self.spool.queue_path(int(spec["seq"]), key).exists():
                return BatchStatus(job_id, BatchState.QUEUED, batch_id)
        return BatchStatus(job_id, BatchState.LOST, batch_id, reason="neither queued nor running")

    def kill(self, job_ids: Iterable[str]) -> None:
        with self.spool.locked():
            for job_id in job_ids:
                key = self.spool.key(job_id)
                spec = read_json(self.spool.spec_path(key))
                if spec is None or self.spool.result_path(key).exists():
                    continue
                queued = self.spool.queue_path(int(spec["seq"]), key)
                if queued.exists():
                    queued.unlink()
                    write_json_atomic(
                        self.spool.result_path(key),
                        {"state": "cancelled", "reason": "killed while queued"},
                    )
                    continue
                self.spool.kill_path(key).touch()
                started = read_json(self.spool.started_path(key))
                if started:  # the launcher escalates to SIGKILL after the grace time
                    kill_group(started["pid"], started["create_time"], signal.SIGTERM)
            self._children.extend(self.spool.schedule())

    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        found = {}
        for job_id in job_ids:
            spec = read_json(self.spool.spec_path(self.spool.key(job_id)))
            if spec is not None and spec.get("job_id") == job_id:
                found[job_id] = str(spec["seq"])
        return found

    def capacity(self) -> list[SiteSlots]:
        self._schedule()
        return [
            SiteSlots(
                site=self.opts.site,
                slots=self.opts.slots,
                running=self.spool.running_count(),
                queued=self.spool.queued_count(),
            )
        ]


def _final_status(job_id: str, batch_id: str, result: dict[str, Any]) -> BatchStatus:
    state, error_class = _FINAL.get(result.get("state", "lost"), (BatchState.LOST, None))
    return BatchStatus(
        job_id=job_id,
        state=state,
        batch_id=batch_id,
        exit_code=result.get("exit_code"),
        error_class=error_class,
        reason=result.get("reason"),
        wall_s=result.get("wall_s"),
        cpu_s=result.get("cpu_s"),
        max_rss_mb=result.get("max_rss_mb"),
    )
