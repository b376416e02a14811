"""How Slurm's job states, reasons and exit codes map to `BatchStatus` (pure functions).

Slurm reports a finished job's exit code as a raw wait status in `squeue -O exit_code`
(code << 8 | signal). A job whose payload exited non-zero is FAILED/NonZeroExitCode to Slurm but
DONE to us: the batch system ran it to the end and the exit code tells how the payload fared.
Failures of the batch system itself become FAILED with the Slurm state name as error class.
"""

from __future__ import annotations

from dataclasses import dataclass

from prodagent.batch.base import BatchState, BatchStatus

QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)
# Batch-level failures, reported with the state's own name as error class.
FAILURE_STATES = frozenset(
    {
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "TIMEOUT",
        "PREEMPTED",
        "CANCELLED",
        "BOOT_FAIL",
        "DEADLINE",
        "SPECIAL_EXIT",
        "REVOKED",
    }
)
# What slurmstepd writes to the job's output when OverMemoryKill (no cgroups) kills it.
MEMORY_KILL_MARKERS = ("exceeded job memory limit", "exceeded memory limit", "oom-kill")

SQUEUE_FIELDS = (
    "ArrayJobID",
    "ArrayTaskID",
    "JobID",
    "Name",
    "State",
    "Reason",
    "exit_code",
    "TimeUsed",
    "Partition",
)
SQUEUE_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)


@dataclass(frozen=True)
class SlurmRow:
    """One line of `squeue -r -t all -O SQUEUE_FORMAT`."""

    array_job_id: str
    task_id: int | None
    job_id: str
    name: str
    state: str
    reason: str
    raw_exit: int
    time_used_s: float | None
    partition: str

    @property
    def batch_id(self) -> str:
        return f"{self.array_job_id}_{self.task_id}" if self.task_id is not None else self.job_id


def parse_squeue(text: str) -> list[SlurmRow]:
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < len(SQUEUE_FIELDS):
            continue
        array_id, task, job_id, name, state, reason, raw_exit, used, partition = parts[:9]
        rows.append(
            SlurmRow(
                array_job_id=array_id,
                task_id=int(task) if task.isdigit() else None,
                job_id=job_id,
                name=name,
                # "CANCELLED by 0" in some versions; the first word is the state.
                state=state.split()[0] if state else "",
                reason=reason,
                raw_exit=int(raw_exit) if raw_exit.lstrip("-").isdigit() else 0,
                time_used_s=parse_duration(used),
                partition=partition,
            )
        )
    return rows


def parse_duration(text: str) -> float | None:
    """Slurm's [days-][hours:]minutes:seconds; None when it is not a duration."""
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return float(seconds + (int(days) * 86400 if days else 0))


def status_from_row(
    job_id: str, row: SlurmRow, output_text: str = "", runner: dict | None = None
) -> BatchStatus:
    """The status of one job from its squeue row, the job's Slurm output and runner result."""
    base = {"job_id": job_id, "batch_id": row.batch_id}
    if row.state in QUEUED_STATES:
        return BatchStatus(state=BatchState.QUEUED, reason=row.reason, **base)
    if row.state in RUNNING_STATES:
        return BatchStatus(state=BatchState.RUNNING, wall_s=row.time_used_s, **base)
    code, sig = row.raw_exit >> 8, row.raw_exit & 0x7F
    usage = {
        "wall_s": (runner or {}).get("wall_s", row.time_used_s),
        "cpu_s": (runner or {}).get("cpu_s"),
        "max_rss_mb": (runner or {}).get("max_rss_mb"),
    }
    exit_code = (runner or {}).get("exit_code", code if not sig else 128 + sig)
    if row.state in FAILURE_STATES:
        return BatchStatus(
            state=BatchState.FAILED,
            error_class=row.state,
            reason=row.reason,
            exit_code=exit_code,
            **usage,
            **base,
        )
    if row.state == "COMPLETED" or (row.state == "FAILED" and row.reason == "NonZeroExitCode"):
        return BatchStatus(state=BatchState.DONE, exit_code=exit_code, **usage, **base)
    if row.state == "FAILED":
        lowered = output_text.lower()
        if any(marker in lowered for marker in MEMORY_KILL_MARKERS):
            error_class = "OUT_OF_MEMORY"
        elif row.reason == "JobLaunchFailure" and sig:
            error_class = "LAUNCH_FAILED"
        else:
            error_class = "FAILED"
        return BatchStatus(
            state=BatchState.FAILED,
            error_class=error_class,
            reason=row.reason,
            exit_code=exit_code,
            **usage,
            **base,
        )
    return BatchStatus(
        state=BatchState.FAILED, error_class=row.state or "UNKNOWN", reason=row.reason, **base
    )
