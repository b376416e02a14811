"""The job report (`report.json`) and the rules that decide whether a job succeeded.

A job succeeded only if its payload exited 0, printed "End of Job", and left the output the
spec asked for: present, not empty, readable, with the expected number of events and, for
production, the expected run and first event. Anything else is a failure with an error code
from `codes`. The agent reads the report with `read_report`; uproot is imported only to
inspect outputs, so reading a report stays cheap.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from prodagent.payload import codes
from prodagent.payload.files import adler32_of, atomic_write_text
from prodagent.payload.jobspec import JobSpec
from prodagent.payload.logscan import LogSummary, scan_log

REPORT_NAME = "report.json"
LOG_NAME = "job.log"


class OutputFile(BaseModel):
    """One output file as found after the job. ROOT facts are None when unreadable."""

    model_config = ConfigDict(extra="forbid")

    path: str
    size: int
    adler32: str
    events: int | None = None
    run: int | None = None
    first_event: int | None = None
    element: str | None = None  # staged out: the storage element holding it (`path` is its PFN)
    stageout_s: float | None = None  # staged out: the time it took, retries included
    step: str | None = None  # a kept intermediate output (StepChain): the step that wrote it
    dataset: str | None = None  # ... and the dataset it is registered in


class StepResult(BaseModel):
    """One step of a multi-step job: how it ended in this attempt, or `reused` from attempt
    `attempt` (its output was still in the job's work area)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    transformation: str
    status: Literal["success", "failed"]
    reused: bool = False
    attempt: int = 0
    exit_code: int | None = None
    wall_s: float = 0.0


class JobReport(BaseModel):
    """What the job wrapper found; written once per attempt, after the payload has ended."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    job_type: Literal["production", "merge"] | None
    transformation: str | None = None
    retry: int = 0
    exit_code: int | None  # the payload's exit status (128 + N if killed by signal N)
    status: Literal["success", "failed"]
    error_code: int | None = None
    error_reason: str | None = None
    events_processed: int = 0
    outputs: list[OutputFile] = []
    inputs: list[str] = []
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    log_path: str
    started_at: datetime
    ended_at: datetime
    end_of_job_seen: bool = False
    steps: list[StepResult] = []
    kept: list[OutputFile] = []  # intermediate step outputs kept (StepChain `keep`)

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass
class RunResult:
    """How the payload process ended, as measured by the wrapper."""

    exit_code: int | None
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    started_at: datetime
    ended_at: datetime
    limit_code: int | None = None  # MEMORY_LIMIT / TIME_LIMIT / TERMINATED: the wrapper killed it
    limit_reason: str | None = None
    exec_error: str | None = None  # the payload could not be started


@dataclass
class _Problem:
    code: int
    message: str


def evaluate(spec: JobSpec, jobdir: Path, run: RunResult) -> JobReport:
    """Judge a finished job from its spec, its log and its output."""
    log_path = jobdir / LOG_NAME
    log = scan_log(log_path)
    outputs: list[OutputFile] = []
    problems: list[_Problem] = []
    if spec.output_path:
        found, problem = inspect_output(spec, jobdir / spec.output_path)
        outputs = [found] if found else []
        if run.exit_code == 0 and run.limit_code is None and problem:
            problems.append(problem)
    problems = _run_problems(run, log) + problems
    if not problems:
        problems = _content_problems(spec, log, outputs[0] if outputs else None)
    first = problems[0] if problems else None
    return JobReport(
        job_id=spec.job_id,
        job_type=spec.job_type,
        transformation=spec.transformation,
        retry=spec.retry,
        exit_code=run.exit_code,
        status="failed" if first else "success",
        error_code=first.code if first else None,
        error_reason="; ".join(p.message for p in problems) if problems else None,
        events_processed=_events_processed(log),
        outputs=outputs,
        inputs=[p if "://" in p else str(jobdir / p) for p in spec.inputs],
        wall_s=round(run.wall_s, 3),
        cpu_s=round(run.cpu_s, 3),
        max_rss_mb=round(run.max_rss_mb, 1),
        log_path=str(log_path),
        started_at=run.started_at,
        ended_at=run.ended_at,
        end_of_job_seen=log.end_of_job_seen,
    )


def inspect_output(spec: JobSpec, path: Path) -> tuple[OutputFile | None, _Problem | None]:
    """Facts about the output file, and the first thing wrong with it (if any)."""
    if not path.is_file():
        return None, _Problem(codes.MISSING_OUTPUT, f"output {path} missing")
    size = path.stat().st_size
    found = OutputFile(path=str(path), size=size, adler32=adler32_of(path))
    if size == 0:
        return found, _Problem(codes.EMPTY_OUTPUT, f"output {path} has 0 bytes")
    if spec.transformation == "command" and path.suffix != ".root":
        return found, None
    try:
        from prodagent.payload import rootio

        found.events = rootio.count_entries(path)
        found.run, found.first_event = rootio.first_run_event(path)
    except Exception as exc:  # noqa: BLE001 - whatever the reason, the file cannot be used
        return found, _Problem(codes.UNREADABLE_OUTPUT, f"output {path} unreadable: {exc}")
    if found.events == 0:
        return found, _Problem(codes.EMPTY_OUTPUT, f"output {path} has 0 events")
    return found, None


def _run_problems(run: RunResult, log: LogSummary) -> list[_Problem]:
    if run.limit_code is not None:
        return [_Problem(run.limit_code, run.limit_reason or codes.DESCRIPTIONS[run.limit_code])]
    if run.exec_error is not None:
        return [_Problem(codes.EXEC_FAILED, run.exec_error)]
    if run.exit_code is None or run.exit_code == 0:
        return []
    what = f"exit code {run.exit_code}"
    if run.exit_code > 128 and run.exit_code - 128 in signal.valid_signals():
        what += f" (killed by {signal.Signals(run.exit_code - 128).name})"
    return [_Problem(run.exit_code, ": ".join([what, *log.error_lines[:3]]))]


def _content_problems(spec: JobSpec, log: LogSummary, output: OutputFile | None) -> list[_Problem]:
    """Checks for a job that exited 0 and whose output (if any) is present and readable."""
    problems = []
    if not log.end_of_job_seen:
        problems.append(_Problem(codes.NO_END_OF_JOB, "no 'End of Job' line in the log"))
    expected = spec.expected_events()
    if output is not None and output.events is not None and expected is not None:
        if output.events != expected:
            problems.append(
                _Problem(
                    codes.EVENT_COUNT_MISMATCH,
                    f"output holds {output.events} events, expected {expected}",
                )
            )
        elif log.end_of_job_events not in (None, expected):
            problems.append(
                _Problem(
                    codes.EVENT_COUNT_MISMATCH,
                    f"log says {log.end_of_job_events} events, expected {expected}",
                )
            )
    if (
        spec.transformation == "pythia"
        and output is not None
        and (output.run, output.first_event) != (spec.run, spec.first_event)
    ):
        problems.append(
            _Problem(
                codes.NUMBERING_MISMATCH,
                f"output starts at run {output.run} event {output.first_event}, "
                f"expected run {spec.run} event {spec.first_event}",
            )
        )
    return problems


def _events_processed(log: LogSummary) -> int:
    if log.end_of_job_events is not None:
        return log.end_of_job_events
    return log.last_processed or 0


def write_report(jobdir: str | os.PathLike[str], report: JobReport, fsync: bool = True) -> Path:
    """Write JOBDIR/report.json atomically, so a reader never sees half a report."""
    target = Path(jobdir) / REPORT_NAME
    atomic_write_text(target, report.model_dump_json(indent=2) + "\n", fsync)
    return target


def read_report(jobdir: str | os.PathLike[str]) -> JobReport | None:
    """The job's report, or None if there is none yet. Raises ValueError if it is corrupt."""
    try:
        text = (Path(jobdir) / REPORT_NAME).read_text()
    except FileNotFoundError:
        return None
    return JobReport.model_validate_json(text)
