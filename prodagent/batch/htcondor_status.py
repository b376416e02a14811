"""HTCondor job states to `BatchStatus`: from job ClassAds (queue, history) and from job events.

Held jobs are failures of the batch system; HoldReasonCode (and for policy holds the subcode)
names the error class. A removed job is CANCELLED. A completed job is DONE with its exit code
(128 + signal when it was killed by one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prodagent.batch.base import BatchState, BatchStatus
from prodagent.batch.htcondor_submit import MEMORY_HOLD_SUBCODE

# HoldReasonCode -> error class (codes from the HTCondor manual's job ClassAd attributes).
HOLD_CLASSES: dict[int, str] = {
    1: "HELD_BY_USER",
    6: "LAUNCH_FAILED",  # FailedToCreateProcess
    7: "LAUNCH_FAILED",  # UnableToOpenOutput
    8: "LAUNCH_FAILED",  # UnableToOpenInput
    12: "TRANSFER_OUTPUT_FAILED",  # DownloadFileError
    13: "TRANSFER_INPUT_FAILED",  # UploadFileError
    14: "LAUNCH_FAILED",  # IwdError
    21: "STARTD_HELD",
    22: "LAUNCH_FAILED",  # UnableToInitUserLog
    32: "TRANSFER_INPUT_FAILED",  # MaxTransferInputSizeExceeded
    33: "TRANSFER_OUTPUT_FAILED",  # MaxTransferOutputSizeExceeded
    34: "OUT_OF_MEMORY",  # JobOutOfResources (memory above the request)
    35: "CONTAINER_FAILED",  # InvalidDockerImage
    45: "CONTAINER_FAILED",  # SingularityTestFailed
    46: "TIMEOUT",  # JobDurationExceeded
    47: "TIMEOUT",  # JobExecuteExceeded
}
POLICY_CODES = {3, 26}  # JobPolicy, SystemPolicy: the subcode tells which policy


def hold_class(code: int | None, subcode: int | None) -> str:
    if code in POLICY_CODES:
        return "OUT_OF_MEMORY" if subcode == MEMORY_HOLD_SUBCODE else "POLICY_HOLD"
    return HOLD_CLASSES.get(code or 0, "HELD")


def status_from_ad(job_id: str, ad: Mapping[str, Any]) -> BatchStatus:
    """Status from a job ClassAd of the queue or the history."""
    batch_id = f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
    status = int(ad.get("JobStatus", 0))
    wall = _float(ad.get("RemoteWallClockTime"))
    cpu = None
    if ad.get("RemoteUserCpu") is not None:
        cpu = _float(ad.get("RemoteUserCpu")) + (_float(ad.get("RemoteSysCpu")) or 0.0)
    rss = _float(ad.get("ResidentSetSize"))
    usage = {"wall_s": wall, "cpu_s": cpu, "max_rss_mb": rss / 1024 if rss else None}
    if status == 1:
        return BatchStatus(job_id, BatchState.QUEUED, batch_id)
    if status in (2, 6, 7):
        return BatchStatus(job_id, BatchState.RUNNING, batch_id)
    if status == 3:
        return BatchStatus(
            job_id,
            BatchState.FAILED,
            batch_id,
            error_class="CANCELLED",
            reason=ad.get("RemoveReason"),
            **usage,
        )
    if status == 4:
        if ad.get("ExitBySignal"):
            code = 128 + int(ad.get("ExitSignal") or 0)
        else:
            code = int(ad.get("ExitCode") or 0)
        return BatchStatus(job_id, BatchState.DONE, batch_id, exit_code=code, **usage)
    if status == 5:
        code, sub = ad.get("HoldReasonCode"), ad.get("HoldReasonSubCode")
        return BatchStatus(
            job_id,
            BatchState.FAILED,
            batch_id,
            error_class=hold_class(_int(code), _int(sub)),
            reason=ad.get("HoldReason"),
            **usage,
        )
    return BatchStatus(job_id, BatchState.LOST, batch_id, reason=f"JobStatus {status}")


@dataclass
class EventTrack:
    """What the event log says about one proc so far."""

    job_id: str
    batch_id: str
    status: BatchStatus
    started: float | None = None
    seen: list[int] = field(default_factory=list)


_USAGE = re.compile(r"Usr (\d+) (\d+):(\d+):(\d+), Sys (\d+) (\d+):(\d+):(\d+)")


def _usage_seconds(text: str | None) -> float | None:
    match = _USAGE.search(text or "")
    if not match:
        return None
    v = [int(x) for x in match.groups()]
    return float(
        v[0] * 86400
        + v[1] * 3600
        + v[2] * 60
        + v[3]
        + v[4] * 86400
        + v[5] * 3600
        + v[6] * 60
        + v[7]
    )


def fold_events(events: Iterable[Any]) -> dict[str, BatchStatus]:
    """Final view of a job event log: {agent job id: status}, newest proc per job id.

    `events` are htcondor2.JobEvent objects (anything with type, cluster, proc, timestamp and
    dict-style access). Procs whose SUBMIT event (which carries the job id) is absent are skipped.
    """
    tracks: dict[tuple[int, int], EventTrack] = {}
    latest: dict[str, tuple[int, int]] = {}
    for ev in events:
        key = (int(ev.cluster), int(ev.proc))
        number = int(ev.get("EventTypeNumber", -1))
        if number == 0:
            job_id = str(ev.get("LogNotes", "")).strip()
            if not job_id:
                continue
            batch_id = f"{key[0]}.{key[1]}"
            tracks[key] = EventTrack(
                job_id, batch_id, BatchStatus(job_id, BatchState.QUEUED, batch_id)
            )
            if key >= latest.get(job_id, (-1, -1)):
                latest[job_id] = key
            continue
        track = tracks.get(key)
        if track is None:
            continue
        track.status = _apply(track, number, ev)
    return {job_id: tracks[key].status for job_id, key in latest.items()}


def _apply(track: EventTrack, number: int, ev: Any) -> BatchStatus:
    current = track.status
    if number == 1:  # EXECUTE
        track.started = float(ev.timestamp)
        return replace(current, state=BatchState.RUNNING)
    if number in (4, 13):  # JOB_EVICTED (requeued), JOB_RELEASED
        return replace(current, state=BatchState.QUEUED, error_class=None, reason=None)
    if number == 5:  # JOB_TERMINATED
        if ev.get("TerminatedNormally", True):
            code = int(ev.get("ReturnValue", 0))
        else:
            code = 128 + int(ev.get("TerminatedBySignal", 0))
        wall = float(ev.timestamp) - track.started if track.started is not None else None
        usage = _usage_seconds(ev.get("RunRemoteUsage"))
        memory = ev.get("MemoryUsage")
        return replace(
            current,
            state=BatchState.DONE,
            exit_code=code,
            wall_s=wall,
            cpu_s=usage,
            max_rss_mb=float(memory) if memory is not None else None,
        )
    if number == 9:  # JOB_ABORTED
        return replace(
            current, state=BatchState.FAILED, error_class="CANCELLED", reason=ev.get("Reason")
        )
    if number == 12:  # JOB_HELD
        cls = hold_class(_int(ev.get("HoldReasonCode")), _int(ev.get("HoldReasonSubCode")))
        return replace(
            current, state=BatchState.FAILED, error_class=cls, reason=ev.get("HoldReason")
        )
    return current


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
