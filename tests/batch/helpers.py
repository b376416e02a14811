"""Shared helpers of the batch-engine tests."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prodagent.batch.base import BatchPlugin, BatchState, BatchStatus

FINAL = {BatchState.DONE, BatchState.FAILED, BatchState.LOST}


def wait_final(
    plugin: BatchPlugin, job_ids: Iterable[str], timeout: float = 60.0, poll: float = 0.2
) -> dict[str, BatchStatus]:
    """Query until every job is final; fail with the states seen when the timeout passes."""
    ids = list(job_ids)
    deadline = time.monotonic() + timeout
    while True:
        status = plugin.query(ids)
        if all(s.state in FINAL for s in status.values()):
            return status
        if time.monotonic() > deadline:
            pending = {k: v.state.value for k, v in status.items() if v.state not in FINAL}
            raise AssertionError(f"jobs not final after {timeout} s: {pending}")
        time.sleep(poll)


def wait_state(
    plugin: BatchPlugin, job_id: str, states: set[BatchState], timeout: float = 30.0
) -> BatchStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = plugin.query([job_id])[job_id]
        if status.state in states:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} still {status.state.value} after {timeout} s")
        time.sleep(0.2)
