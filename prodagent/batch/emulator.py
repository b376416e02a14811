"""JobEmulator: a fake batch system for driving the whole agent at scale with no payload cost.

At submission each job draws, deterministically from (seed, job id, attempt), a queue delay, a
run time and an outcome; the row goes into one SQLite table under `<workdir>/emulator/`, shared
by the submitter and tracker processes and surviving their restarts. A query computes each
job's state from the clock. Outcomes: success (with a synthetic report.json and output file,
written when a query first sees the job finished, or by the emulator's worker-node process:
`reports_by`), exit codes, log patterns, batch
failures (OUT_OF_MEMORY, ...), lost jobs, a black-hole node that fails its jobs quickly (unless
the job excludes that node: the emulator's notion of `--exclude`), and a whole-site outage: while
the file `broken_while` exists, every job submitted fails quickly with a site-caused error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prodagent.batch import emulator_nodes
from prodagent.batch.base import (
    BatchJob,
    BatchPlugin,
    BatchState,
    BatchStatus,
    PluginOptions,
    SiteSlots,
)
from prodagent.batch.emulator_db import EmulatorDB, JobRow
from prodagent.batch.emulator_report import job_spec, write_job_result


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Duration(_Strict):
    """A time distribution: fixed `value_s`, uniform in [min_s, max_s], or exponential."""

    distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    value_s: float = Field(default=60.0, ge=0)
    min_s: float = Field(default=0.0, ge=0)
    max_s: float = Field(default=120.0, ge=0)
    mean_s: float = Field(default=60.0, gt=0)

    def draw(self, rng: random.Random) -> float:
        if self.distribution == "uniform":
            return rng.uniform(self.min_s, self.max_s)
        if self.distribution == "exponential":
            return rng.expovariate(1.0 / self.mean_s)
        return self.value_s


class Outcome(_Strict):
    """One way a job may end, drawn with `probability`; jobs drawing none succeed."""

    probability: float = Field(ge=0, le=1)
    exit_code: int = 0
    log: str | None = None  # a line the job's log gets, e.g. "A FATAL ERROR APPEARED"
    error_class: str | None = None  # a batch-level failure: OUT_OF_MEMORY, NODE_FAIL, ...
    lost: bool = False  # the batch system forgets the job when it would have ended


class BlackHole(_Strict):
    """A broken node: the share `fraction` of jobs lands there and fails after `duration_s`."""

    node: str = "emu-blackhole"
    fraction: float = Field(default=0.0, ge=0, le=1)
    duration_s: float = Field(default=1.0, ge=0)
    exit_code: int = 1
    log: str | None = "A FATAL ERROR APPEARED: black hole node"
    error_class: str | None = None  # e.g. NODE_FAIL: a batch-level failure instead of an exit code


class Outage(_Strict):
    """The whole site is broken while `broken_while` exists: jobs fail after `duration_s`."""

    broken_while: Path
    error_class: str = "NODE_FAIL"
    duration_s: float = Field(default=0.2, ge=0)


class JobEmulatorOptions(PluginOptions):
    seed: int = 0
    duration: Duration = Field(default_factory=Duration)
    queue_delay: Duration = Field(default_factory=lambda: Duration(value_s=0.0))
    outcomes: list[Outcome] = Field(default_factory=list)
    black_hole: BlackHole | None = None
    outage: Outage | None = None
    nodes: int = Field(default=10, ge=1)
    site: str = "emulator"
    slots: int = Field(default=100_000, ge=1)  # reported by capacity(); not enforced
    # Cost per event: a production job runs events x per_event_s x uniform(1 -+ per_event_jitter)
    # (its spec says how many events) instead of `duration`; peak memory is drawn from `rss_mb`.
    per_event_s: float | None = Field(default=None, gt=0)
    per_event_jitter: float = Field(default=0.0, ge=0, lt=1)
    rss_mb: Duration = Field(default_factory=lambda: Duration(value_s=250.0))
    write_reports: bool = True  # report.json, logs and output per finished job
    # Who writes them: `inline`, the agent's process that first sees the job ended (simple, but
    # the agent then does the jobs' own work); `nodes`, a worker-node process of the emulator
    # (`emulator_nodes`), as real jobs write theirs on their nodes: a job whose results are not
    # written yet still runs, for up to `nodes_grace_s` after its end, then it is written inline.
    reports_by: Literal["inline", "nodes"] = "inline"
    nodes_grace_s: float = Field(default=60.0, gt=0)
    nodes_idle_s: float = Field(default=30.0, gt=0)  # the node process stops after this long with nothing to write
    output_bytes: int = Field(default=1024, ge=1)

    @model_validator(mode="after")
    def _probabilities(self) -> JobEmulatorOptions:
        if sum(o.probability for o in self.outcomes) > 1.0 + 1e-9:
            raise ValueError("outcome probabilities add up to more than 1")
        return self


class JobEmulator(BatchPlugin):
    name = "emulator"
    Options = JobEmulatorOptions

    def __init__(self, options: PluginOptions, workdir: Path) -> None:
        super().__init__(options, workdir)
        self.opts: JobEmulatorOptions = options  # type: ignore[assignment]
        self.db = EmulatorDB(workdir / "emulator" / "jobs.sqlite")
        self._nodes_checked_at = float("-inf")

    def close(self) -> None:
        self.db.close()

    # ---- drawing --------------------------------------------------------------------------------
    def _draw(self, job: BatchJob, seq: int, attempt: int, now: float, broken: bool = False) -> JobRow:
        rng = random.Random(f"{self.opts.seed}:{job.job_id}:{attempt}")
        start = now + self.opts.queue_delay.draw(rng)
        if broken and self.opts.outage:
            out, node = self.opts.outage, f"emu-node-{rng.randrange(self.opts.nodes):03d}"
            return JobRow(job.job_id, seq, attempt, str(job.workdir), node, now, start, start + out.duration_s,
                          0, out.error_class, 0, None, None, 0)
        hole = self.opts.black_hole
        if hole and rng.random() < hole.fraction and hole.node not in job.exclude_nodes:
            return JobRow(job.job_id, seq, attempt, str(job.workdir), hole.node, now, start,
                          start + hole.duration_s, hole.exit_code, hole.error_class, 0, hole.log, None, 0)
        node = f"emu-node-{rng.randrange(self.opts.nodes):03d}"
        end = start + self._run_time(job, rng)
        pick, outcome = rng.random(), Outcome(probability=0.0)
        for candidate in self.opts.outcomes:
            if pick < candidate.probability:
                outcome = candidate
                break
            pick -= candidate.probability
        return JobRow(
            job.job_id,
            seq,
            attempt,
            str(job.workdir),
            node,
            now,
            start,
            end,
            outcome.exit_code,
            outcome.error_class,
            int(outcome.lost),
            outcome.log,
            None,
            0,
        )

    def _run_time(self, job: BatchJob, rng: random.Random) -> float:
        if self.opts.per_event_s is None:
            return self.opts.duration.draw(rng)
        spec = job_spec(job.workdir)
        if spec is None or spec.transformation == "merge":  # merges copy events: no per-event cost
            return self.opts.duration.draw(rng)
        events = spec.expected_events() or 1
        jitter = self.opts.per_event_jitter
        return events * self.opts.per_event_s * rng.uniform(1 - jitter, 1 + jitter)

    def _rss(self, job_id: str) -> float:
        return round(self.opts.rss_mb.draw(random.Random(f"{self.opts.seed}:{job_id}:rss")), 1)

    # ---- BatchPlugin ----------------------------------------------------------------------------
    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        now = time.time()
        known = {r.job_id: r for r in self.db.rows(j.job_id for j in jobs)}
        accepted: dict[str, str] = {}
        fresh: list[JobRow] = []
        seq = self.db.reserve_seq(len(jobs))
        broken = self.opts.outage is not None and self.opts.outage.broken_while.exists()
        for job in jobs:
            old = known.get(job.job_id)
            if old is not None and old.end > now and old.killed is None:
                accepted[job.job_id] = str(old.seq)  # still active: never run twice
                continue
            row = self._draw(job, seq, old.attempt + 1 if old else 0, now, broken)
            fresh.append(row)
            accepted[job.job_id] = str(seq)
            seq += 1
        self.db.insert(fresh)
        if fresh and self.opts.write_reports and self.opts.reports_by == "nodes":
            self._ensure_nodes()
        return accepted

    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        ids = list(job_ids)
        now = time.time()
        result: dict[str, BatchStatus] = {}
        to_report: list[JobRow] = []
        by_nodes = self.opts.write_reports and self.opts.reports_by == "nodes"
        for row in self.db.rows(ids):
            # The peak memory is drawn (a seeded generator per job: not free) only once the job has ended.
            status = _status(row, now, self._rss(row.job_id) if now >= row.end else 0.0)
            if self.opts.write_reports and not row.reported and status.state is BatchState.DONE:
                if by_nodes and now - row.end < self.opts.nodes_grace_s:
                    status = BatchStatus(row.job_id, BatchState.RUNNING, str(row.seq), node=row.node)
                else:
                    to_report.append(row)
            result[row.job_id] = status
        if by_nodes and len(to_report) < len(result):
            self._ensure_nodes()
        self.write_results(to_report)
        for job_id in ids:
            if job_id not in result:
                result[job_id] = BatchStatus(job_id, BatchState.LOST, reason="never submitted")
        return result

    def _ensure_nodes(self) -> None:
        """The node process runs (checked at most every few seconds: one starting takes a moment)."""
        if time.monotonic() >= self._nodes_checked_at + emulator_nodes.RECHECK_S:
            self._nodes_checked_at = time.monotonic()
            emulator_nodes.ensure_running(self.workdir, self.opts)

    def write_results(self, rows: Sequence[JobRow]) -> None:
        """Each ended job's logs, output (on success) and report.json, as the job would leave them."""
        for row in rows:
            write_job_result(Path(row.workdir), row.job_id, row.exit_code, row.log, row.start, row.end,
                             self.opts.output_bytes, self._rss(row.job_id))
        self.db.mark_reported([r.job_id for r in rows])

    def kill(self, job_ids: Iterable[str]) -> None:
        self.db.kill(job_ids, time.time())

    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        return {r.job_id: str(r.seq) for r in self.db.rows(job_ids)}

    def capacity(self) -> list[SiteSlots]:
        running, queued = self.db.counts(time.time())
        return [SiteSlots(self.opts.site, self.opts.slots, running, queued)]


def _status(row: JobRow, now: float, rss_mb: float = 250.0) -> BatchStatus:
    """A job's state at `now`, from what was drawn at submission."""
    batch_id = str(row.seq)
    if row.killed is not None and row.killed < row.end:
        return BatchStatus(
            row.job_id,
            BatchState.FAILED,
            batch_id,
            error_class="CANCELLED",
            reason=f"killed on {row.node}",
            node=row.node,
        )
    if now < row.start:
        return BatchStatus(row.job_id, BatchState.QUEUED, batch_id)
    if now < row.end:
        return BatchStatus(row.job_id, BatchState.RUNNING, batch_id, wall_s=now - row.start, node=row.node)
    wall = row.end - row.start
    if row.lost:
        return BatchStatus(row.job_id, BatchState.LOST, batch_id, reason=f"lost on {row.node}", node=row.node)
    if row.error_class:
        return BatchStatus(
            row.job_id,
            BatchState.FAILED,
            batch_id,
            error_class=row.error_class,
            reason=f"{row.error_class} on {row.node}",
            wall_s=wall,
            node=row.node,
        )
    return BatchStatus(
        row.job_id,
        BatchState.DONE,
        batch_id,
        exit_code=row.exit_code,
        reason=f"ran on {row.node}",
        wall_s=wall,
        cpu_s=round(wall * 0.95, 3),
        max_rss_mb=rss_mb,
        node=row.node,
    )
