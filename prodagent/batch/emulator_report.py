"""Synthetic job results of the JobEmulator: report.json, output file and logs in JOBDIR.

The report has the format of `prodagent.payload.report.JobReport`, so the agent reads an
emulated job exactly like a real one. When JOBDIR/job.json (the payload's job spec) exists, the
output path, event count and numbering come from it; otherwise a generic output is made up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prodagent.payload import codes
from prodagent.payload.files import adler32_of
from prodagent.payload.jobspec import JobSpec, read_spec
from prodagent.payload.report import LOG_NAME, JobReport, OutputFile, write_report

DEFAULT_OUTPUT = "output.dat"


def job_spec(jobdir: Path) -> JobSpec | None:
    try:
        return read_spec(jobdir)
    except Exception:  # noqa: BLE001 - no or unusable spec: emulate a generic job
        return None


def write_job_result(
    jobdir: Path,
    job_id: str,
    exit_code: int,
    log_line: str | None,
    started: float,
    ended: float,
    output_bytes: int,
    max_rss_mb: float = 250.0,
) -> JobReport:
    """Write the logs, the output (on success) and report.json of one emulated job."""
    jobdir.mkdir(parents=True, exist_ok=True)
    spec = job_spec(jobdir)
    events = (spec.expected_events() if spec else None) or 100
    succeeded = exit_code == 0 and log_line is None
    lines = [f"JobEmulator: job {job_id}", f"Processed {events}/{events} events"]
    if log_line:
        lines.append(log_line)
    if succeeded:
        lines.append(f"End of Job: {events} events")
    log_text = "\n".join(lines) + "\n"
    (jobdir / LOG_NAME).write_text(log_text)
    (jobdir / "batch.out").write_text(log_text)

    outputs = []
    if succeeded:
        out_path = jobdir / (spec.output_path if spec and spec.output_path else DEFAULT_OUTPUT)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(job_id.encode()[:output_bytes].ljust(output_bytes, b"\0"))
        outputs.append(
            OutputFile(
                path=str(out_path),
                size=output_bytes,
                adler32=adler32_of(out_path),
                events=events,
                run=spec.run if spec else None,
                first_event=spec.first_event if spec else None,
            )
        )
    if succeeded:
        error_code, reason = None, None
    elif exit_code != 0:
        error_code, reason = (
            exit_code,
            f"exit code {exit_code}" + (f": {log_line}" if log_line else ""),
        )
    else:
        error_code, reason = codes.NO_END_OF_JOB, f"no 'End of Job' line in the log: {log_line}"
    report = JobReport(
        job_id=job_id,
        job_type=spec.job_type if spec else None,
        transformation=spec.transformation if spec else None,
        retry=spec.retry if spec else 0,
        exit_code=exit_code,
        status="success" if succeeded else "failed",
        error_code=error_code,
        error_reason=reason,
        events_processed=events if succeeded else 0,
        outputs=outputs,
        inputs=[str(jobdir / p) for p in spec.inputs] if spec else [],
        wall_s=round(ended - started, 3),
        cpu_s=round((ended - started) * 0.95, 3),
        max_rss_mb=max_rss_mb,
        log_path=str(jobdir / LOG_NAME),
        started_at=datetime.fromtimestamp(started, UTC),
        ended_at=datetime.fromtimestamp(ended, UTC),
        end_of_job_seen=succeeded,
    )
    # Atomic (a reader never sees half a report) but not fsync'ed like a real job's report:
    # these are written in the tracker's process, and one fsync per job would make the emulator,
    # not the agent, set the tracker's pace at scale.
    write_report(jobdir, report, fsync=False)
    return report
