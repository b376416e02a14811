"""StepChain inside one job: the job's transformation (step "main") and its further steps run
in order, each reading the output of an earlier step from the job's work area.

Step outputs live in `<job dir>/steps/` (beside the attempt directories), each with a small
step report (`<name>.json`) written once the step succeeded. A retry reuses, in order, every
step whose report says success and whose output is still there; from the first step it must
run again, every later step runs too (its input changed). The last step writes the job's own
output (`spec.output_path`), which the wrapper judges as for any job. The job report lists each
step's result, `reused` for those taken from an earlier attempt. Once the job succeeded, the
outputs of steps marked `keep` are linked (or copied) to where the spec says and reported as
`kept` outputs, each with its step and dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prodagent.payload import codes
from prodagent.payload.files import atomic_write_text
from prodagent.payload.jobspec import JobSpec
from prodagent.payload.report import LOG_NAME, JobReport, RunResult, StepResult, inspect_output

MAIN = "main"


def step_specs(spec: JobSpec, area: Path) -> list[tuple[str, JobSpec]]:
    """(name, the spec the transformation runs with) of every step, in order."""
    outputs = {MAIN: area / f"{MAIN}.root"}
    last = len(spec.steps) - 1
    chain = [(MAIN, spec.model_copy(update={"output_path": str(outputs[MAIN]), "steps": []}))]
    for i, step in enumerate(spec.steps):
        out = Path(spec.output_path or "") if i == last else area / f"{step.name}.root"
        outputs[step.name] = out
        chain.append((step.name, spec.model_copy(update={
            "transformation": step.transformation, "params": step.params, "fail": step.fail,
            "inputs": [str(outputs[step.input])], "input_events": [spec.events] if spec.events else None,
            "output_path": str(out), "steps": [],
        })))
    return chain


def run_steps(spec: JobSpec, jobdir: Path, execute: Callable[[JobSpec, Path], RunResult]
              ) -> tuple[RunResult, list[StepResult]]:
    """Run (or reuse) each step; stop at the first that fails. The result of the last step run,
    and every step's result; `job.log` ends up holding the step logs in order."""
    area = jobdir.parent / "steps"
    area.mkdir(parents=True, exist_ok=True)
    results: list[StepResult] = []
    logs: list[Path] = []
    result: RunResult | None = None
    reusing = True
    chain = step_specs(spec, area)
    for name, step in chain:
        marker = area / f"{name}.json"
        output = Path(step.output_path or "")
        if reusing and name != chain[-1][0] and _done(marker, output):
            results.append(StepResult(name=name, transformation=step.transformation, status="success",
                                      reused=True, attempt=json.loads(marker.read_text())["attempt"]))
            continue
        reusing = False
        marker.unlink(missing_ok=True)
        result = execute(step, jobdir)
        log = jobdir / f"job.{name}.log"
        shutil.move(jobdir / LOG_NAME, log)
        logs.append(log)
        ok = result.exit_code == 0 and result.limit_code is None and output.is_file()
        results.append(StepResult(name=name, transformation=step.transformation,
                                  status="success" if ok else "failed", exit_code=result.exit_code,
                                  wall_s=round(result.wall_s, 3), attempt=spec.retry))
        if not ok:
            break
        atomic_write_text(marker, json.dumps({"attempt": spec.retry, "output": str(output)}) + "\n")
    with open(jobdir / LOG_NAME, "wb") as joined:
        for log in logs:
            joined.write(log.read_bytes())
    assert result is not None  # the last step is never reused
    return result, results


def _done(marker: Path, output: Path) -> bool:
    try:
        report: dict[str, Any] = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return output.is_file() and report.get("output") == str(output)


def keep_outputs(spec: JobSpec, jobdir: Path, report: JobReport) -> JobReport:
    """`report` with the kept step outputs of a successful job placed and described; a kept
    output that cannot be placed or read fails the job."""
    if not report.ok or not spec.keep:
        return report
    steps = dict(step_specs(spec, jobdir.parent / "steps"))
    kept = []
    for keep in spec.keep:
        step = steps[keep.step]
        target = Path(keep.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        part.unlink(missing_ok=True)
        try:
            os.link(step.output_path or "", part)
        except OSError:
            shutil.copyfile(step.output_path or "", part)
        os.replace(part, target)
        found, problem = inspect_output(step, target)
        if found is None or problem is not None:
            code, reason = (problem.code, problem.message) if problem else (
                codes.MISSING_OUTPUT, f"kept output {target} missing")
            return report.model_copy(update={"status": "failed", "error_code": code, "error_reason": reason})
        kept.append(found.model_copy(update={"step": keep.step, "dataset": keep.dataset}))
    return report.model_copy(update={"kept": kept})
