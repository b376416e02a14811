"""Build the `job.json` of an attempt from the job's row and its request's workflow.

One place for production and merge jobs alike, so a retry (JobCreator) writes exactly what the
first attempt (JobCreator or MergeSensor) would have, plus what the ErrorHandler changed
(memory, time).

The workflow is read with the request service's own models (`prodrequest.spec`): the document
ProdManager accepted is validated again here, once per workflow text, and the job spec is built
from its typed fields. A workflow the models refuse raises `WorkflowUnrunnable`, whose message
names every field at fault. Failure injection for tests and demos is `spec.TestKnobs`
(`payload.parameters.fail_plan`, `fail`, `merge_drop_events`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from prodagent.jobs import store
from prodagent.jobs.layout import Layout
from prodagent.payload.jobspec import JobSpec, KeepSpec, StepSpec, write_spec
from prodagent.storage.transfer import StageOutSpec, stage_out_spec
from prodmanager.text import one_line
from prodrequest.spec import (
    AGENT_VIEW,
    KINDS,
    MonteCarloWorkflow,
    ProcessingWorkflow,
    workflow_adapter,
)

Workflow = MonteCarloWorkflow | ProcessingWorkflow

#: the most errors a reason lists (the count of the others is given)
MAX_REASON_ERRORS = 5
MAX_REASON_CHARS = 2000


class WorkflowUnrunnable(ValueError):
    """The agent cannot build jobs from this workflow; the message says why, naming fields."""


def parse_workflow(workflow: str | dict[str, Any] | Workflow) -> Workflow:
    """The typed workflow of an allocation's JSON text (or its parsed dict); parsed once per text.
    A processing workflow comes without its file list (each allocation carries its own)."""
    if isinstance(workflow, MonteCarloWorkflow | ProcessingWorkflow):
        return workflow
    text = workflow if isinstance(workflow, str) else json.dumps(workflow, sort_keys=True)
    parsed = _parse_text(text)
    if isinstance(parsed, str):
        raise WorkflowUnrunnable(parsed)
    return parsed


@functools.lru_cache(maxsize=32)
def _parse_text(text: str) -> Workflow | str:
    """The typed workflow, or why there is none (kept too: a bad text is judged once)."""
    try:
        return workflow_adapter.validate_json(text, context=AGENT_VIEW)
    except ValidationError as exc:
        return f"invalid workflow: {describe(exc)}"


def describe(exc: ValidationError) -> str:
    """A validation error as one line: `path: message; ...`, at most MAX_REASON_ERRORS of them."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:MAX_REASON_ERRORS]:
        loc = list(err["loc"])
        if loc and loc[0] in KINDS:
            loc = loc[1:]  # the discriminator tag pydantic prefixes
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        parts.append(f"{path or '(document)'}: {err['msg']}")
    if len(errors) > MAX_REASON_ERRORS:
        parts.append(f"and {len(errors) - MAX_REASON_ERRORS} more error(s)")
    return one_line("; ".join(parts), MAX_REASON_CHARS)


def production_spec(job: Any, workflow: Workflow, output_path: Path,
                    inputs: list[dict[str, Any]] | None = None,
                    stageout: StageOutSpec | None = None, keep: list[KeepSpec] | None = None) -> JobSpec:
    """The spec of a production job's current attempt (`job`: its row, or the row to insert);
    `inputs`: the input files of a processing job (its allocation's); `keep`: where kept
    intermediate step outputs go."""
    payload = workflow.payload
    files = inputs or []
    counts = [f.get("events") for f in files]
    if payload.command is not None:
        transformation, params = "command", {"argv": list(payload.command)}
    else:
        transformation, params = str(payload.transformation), payload.transformation_params()
    return JobSpec(
        job_id=job.name, job_type="production", transformation=transformation, params=params,
        events=job.n_events, first_event=job.first_event, run=job.run, seed=job.seed,
        retry=job.retry, output_path=str(output_path),
        inputs=[str(f.get("pfn") or f["lfn"]) for f in files],  # a chained input: where it was merged
        input_events=[int(c) for c in counts] if files and None not in counts else None,
        fail=payload.typed_parameters.planned_failure(job.job_index, job.retry),
        memory_mb=job.memory_mb, time_limit_s=job.time_s, stageout=stageout,
        steps=[StepSpec(name=step.name, transformation=str(step.transformation),
                        params=step.transformation_params(), input=step.input,
                        fail=step.typed_parameters.planned_failure(job.job_index, job.retry))
               for step in workflow.steps],
        keep=keep or [],
    )


def merge_spec(conn: sa.Connection, job: Any, workflow: Workflow, output_path: Path,
               stageout: StageOutSpec | None = None) -> JobSpec:
    inputs = store.merge_inputs(conn, job.id)
    drop = workflow.payload.typed_parameters.merge_drop_events
    return JobSpec(
        job_id=job.name, job_type="merge", transformation="merge",
        params={"drop_events": drop} if drop else {}, retry=job.retry,
        inputs=[r.pfn for r in inputs], input_events=[int(r.events) for r in inputs],
        output_path=str(output_path), memory_mb=job.memory_mb, time_limit_s=job.time_s, stageout=stageout,
    )


def production_attempt(layout: Layout, job: Any, workflow: Workflow,
                       inputs: list[dict[str, Any]] | None = None) -> tuple[Path, JobSpec]:
    """The attempt directory and spec of a production job, built in memory (nothing written)."""
    out = layout.unmerged_path(workflow.output.dataset, job.name)
    stageout = stage_out_spec(layout.storage, Layout.lfn(workflow.output.dataset, "unmerged", job.name))
    keep = [KeepSpec(step=name, dataset=output.dataset, path=str(layout.unmerged_path(output.dataset, job.name)))
            for name, output in workflow.kept_steps()]
    return layout.attempt_dir(job.workdir, job.retry), production_spec(job, workflow, out, inputs, stageout, keep)


def write_production(attempt: Path, spec: JobSpec) -> Path:
    """Write an attempt's spec (and make its output's directory); idempotent."""
    attempt.mkdir(parents=True, exist_ok=True)
    if spec.output_path:
        Path(spec.output_path).parent.mkdir(parents=True, exist_ok=True)
    write_spec(attempt, spec)
    return attempt


def write_attempt(conn: sa.Connection, layout: Layout, job: Any,
                  workflow: str | dict[str, Any] | Workflow) -> Path:
    """Write the job.json of the job's current attempt; return the attempt directory."""
    return write_production(*attempt_spec(conn, layout, job, workflow))


def attempt_spec(conn: sa.Connection, layout: Layout, job: Any,
                 workflow: str | dict[str, Any] | Workflow) -> tuple[Path, JobSpec]:
    """The attempt directory and spec of the job's current attempt (production or merge),
    built from the database; nothing written (`write_production` writes it)."""
    typed = parse_workflow(workflow)
    if job.job_type == "merge":
        stageout = stage_out_spec(layout.storage, Layout.lfn(typed.output.dataset, "merged", job.name))
        spec = merge_spec(conn, job, typed, layout.merged_path(typed.output.dataset, job.name), stageout)
        return layout.attempt_dir(job.workdir, job.retry), spec
    inputs = store.job_input_files(conn, job) if isinstance(typed, ProcessingWorkflow) else None
    return production_attempt(layout, job, typed, inputs)
