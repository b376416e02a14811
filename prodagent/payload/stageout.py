"""The job wrapper's last step: copy the judged output to its storage element.

On success the report's output names the replica (`element`, and its PFN as `path`) and the
local copy is removed; when every attempt failed the job fails with `codes.STAGEOUT_FAILED`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prodagent.payload import codes
from prodagent.payload.jobspec import JobSpec
from prodagent.payload.report import JobReport
from prodagent.storage.transfer import StageOutFailed, stage_out


def stage_out_output(spec: JobSpec, report: JobReport) -> JobReport:
    """`report` with its one output staged out, or turned into a stage-out failure."""
    assert spec.stageout is not None and len(report.outputs) == 1
    local = Path(report.outputs[0].path)
    started = time.monotonic()
    try:
        placed = stage_out(spec.stageout, local)
    except StageOutFailed as exc:
        local.unlink(missing_ok=True)
        return report.model_copy(update={
            "status": "failed", "error_code": codes.STAGEOUT_FAILED, "error_reason": str(exc)})
    print(f"runjob {spec.job_id}: staged out to {placed.element} as {placed.stat.pfn} "
          f"(adler32 {placed.stat.adler32}, {placed.attempts} attempt(s))", file=sys.stderr, flush=True)
    output = report.outputs[0].model_copy(update={
        "path": placed.stat.pfn, "element": placed.element,
        "stageout_s": round(time.monotonic() - started, 3)})
    local.unlink(missing_ok=True)
    return report.model_copy(update={"outputs": [output]})
