"""Cut a workflow into allocations: one per job, as rows for `pm_allocation`.

Monte Carlo: consecutive event ranges of `events.per_job` (the last one shorter), each with its
job's seed; a request of more than `MAX_ALLOCATIONS` jobs gets ranges of several jobs, each
allocation carrying its first job's index and seed (agents number the rest from them); with `per_job: auto`, ranges of several guessed job lengths that agents cut into jobs
of the measured length, each job's seed and index then being its first event's. Processing:
consecutive groups of `input.files_per_job` files. Each row says how many jobs it holds
(`n_jobs`, for auto a guess): what acquire, the agents' capacity and fair shares count.
"""

from __future__ import annotations

import json
import math
from typing import Any

from prodmanager.states import AllocationState
from prodrequest.spec import EventSplit, MonteCarloWorkflow, ProcessingWorkflow, job_seed


def cut(
    workflow: MonteCarloWorkflow | ProcessingWorkflow, request_id: int, run_number: int, now: float
) -> list[dict[str, Any]]:
    if isinstance(workflow, MonteCarloWorkflow):
        return [_row(request_id, now, **r) for r in _event_ranges(workflow, run_number)]
    return [_row(request_id, now, **r) for r in _file_groups(workflow)]


def _event_ranges(workflow: MonteCarloWorkflow, run_number: int) -> list[dict[str, Any]]:
    events = workflow.events
    total, size, step = events.total, events.allocation_events, events.jobs_per_allocation
    return [
        {
            "job_index": first if events.auto else index * step,
            "first_event": first,
            "n_events": min(size, total - first),
            "seed": job_seed(workflow, run_number, first if events.auto else index * step),
            "input_files": None,
            # per_job auto: a guess (jobs of the guessed length); agents cut the measured length
            "n_jobs": math.ceil(min(size, total - first) / events.job_events),
        }
        for index, first in enumerate(range(0, total, size))
    ]


def _file_groups(workflow: ProcessingWorkflow) -> list[dict[str, Any]]:
    rows = []
    for index, group in enumerate(workflow.input.groups()):
        rows.append(
            {
                "job_index": index,
                "first_event": 0,
                "n_events": sum(f.events or 0 for f in group),
                "seed": index + 1,
                "input_files": json.dumps([f.model_dump(exclude_none=True) for f in group]),
                "n_jobs": 1,
            }
        )
    return rows


def _row(request_id: int, now: float, **values: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "state": AllocationState.OPEN.value,
        "lease_epoch": 0,
        "lease_expires": 0.0,
        "events_done": 0,
        "updated_at": now,
        **values,
    }


def agent_view(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as agents get it: a processing workflow's file list is left out (each
    allocation carries its own files)."""
    if spec.get("kind") != "processing":
        return spec
    return {**spec, "input": {k: v for k, v in spec["input"].items() if k != "files"}}


def jobs_per_allocation(spec: dict[str, Any]) -> int:
    """The most jobs one allocation of this stored spec holds (acquire locks rows by it); 1 for
    processing, or when the spec's events cannot be read (acquire then locks more rows)."""
    if spec.get("kind") != "montecarlo":
        return 1
    try:
        return EventSplit.model_validate(spec["events"]).jobs_per_allocation
    except (ValueError, KeyError, TypeError):  # pydantic's ValidationError is a ValueError
        return 1
