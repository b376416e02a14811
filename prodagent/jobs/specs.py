"""Build the `job.json` of an attempt from the job's row and its request's workflow.

One place for production and merge jobs alike, so a retry (JobCreator) writes exactly what the
first attempt (JobCreator or MergeSensor) would have, plus what the ErrorHandler changed
(memory, time).

Failure injection for tests and demos lives in the workflow's payload parameters:
`fail_plan: "3:exit,5:memory:2"` makes job index 3 fail with mode `exit` on its first attempt
and job 5 with `memory` on its first two; `merge_drop_events: N` makes every merge lose N events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodagent.db.schema import pa_file
from prodagent.jobs.layout import Layout
from prodagent.payload.jobspec import FailSpec, JobSpec, write_spec

RESERVED_PARAMETERS = {"fail_plan", "merge_drop_events"}


def parse_fail_plan(plan: str | None) -> dict[int, tuple[str, int]]:
    """'3:exit,5:memory:2' -> {3: ('exit', 1), 5: ('memory', 2)}."""
    out: dict[int, tuple[str, int]] = {}
    for item in (plan or "").split(","):
        parts = item.strip().split(":")
        if len(parts) < 2:
            continue
        out[int(parts[0])] = (parts[1], int(parts[2]) if len(parts) > 2 else 1)
    return out


def production_spec(job: Any, workflow: dict[str, Any], output_path: Path) -> JobSpec:
    payload = workflow["payload"]
    params = {k: v for k, v in payload.get("parameters", {}).items() if k not in RESERVED_PARAMETERS}
    transformation = payload.get("transformation") or "command"
    if transformation == "command":
        params = {"argv": payload["command"]}
    fail = None
    planned = parse_fail_plan(payload.get("parameters", {}).get("fail_plan")).get(job.job_index)
    if planned and job.retry < planned[1]:
        fail = FailSpec(mode=planned[0], rate=1.0)  # type: ignore[arg-type]
    return JobSpec(
        job_id=job.name, job_type="production", transformation=transformation, params=params,
        events=job.n_events, first_event=job.first_event, run=job.run, seed=job.seed,
        retry=job.retry, output_path=str(output_path), fail=fail,
        memory_mb=job.memory_mb, time_limit_s=job.time_s,
    )


def merge_spec(conn: sa.Connection, job: Any, workflow: dict[str, Any], output_path: Path) -> JobSpec:
    inputs = conn.execute(
        sa.select(pa_file.c.pfn, pa_file.c.events).where(pa_file.c.merge_job_id == job.id).order_by(pa_file.c.id)
    ).all()
    drop = int(workflow.get("payload", {}).get("parameters", {}).get("merge_drop_events", 0) or 0)
    return JobSpec(
        job_id=job.name, job_type="merge", transformation="merge",
        params={"drop_events": drop} if drop else {}, retry=job.retry,
        inputs=[r.pfn for r in inputs], input_events=[int(r.events) for r in inputs],
        output_path=str(output_path), memory_mb=job.memory_mb, time_limit_s=job.time_s,
    )


def write_attempt(conn: sa.Connection, layout: Layout, job: Any, workflow: dict[str, Any]) -> Path:
    """Write the job.json of the job's current attempt; return the attempt directory."""
    dataset = workflow["output"]["dataset"]
    attempt = layout.attempt_dir(job.workdir, job.retry)
    attempt.mkdir(parents=True, exist_ok=True)
    if job.job_type == "merge":
        spec = merge_spec(conn, job, workflow, layout.merged_path(dataset, job.name))
    else:
        out = layout.unmerged_path(dataset, job.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        spec = production_spec(job, workflow, out)
    write_spec(attempt, spec)
    return attempt
