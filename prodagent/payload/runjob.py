"""The job wrapper: the command every batch plugin runs for a job.

    python -m prodagent.payload.runjob JOBDIR

It reads JOBDIR/job.json, runs the transformation as a child process (cwd JOBDIR, stdout and
stderr to JOBDIR/job.log), measures wall time, CPU time and peak memory, enforces the spec's
memory and wall-time limits, judges the result (`report.evaluate`) and writes
JOBDIR/report.json atomically. When the spec says so, a good output is then staged out to a
storage element (`stageout`) and the report names its replica there. It exits 0 on success, the payload's own status when that was
non-zero, or 80 + the last two digits of a 603xx code (`codes.wrapper_exit_status`).

Each run starts clean: the old report and log in JOBDIR and the spec's old output are removed
first, so a retried job can never be judged on the previous attempt's files. A multi-step job
(`spec.steps`) runs its steps in order (`steps`), reusing those an earlier attempt finished.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from prodagent.payload import codes
from prodagent.payload.jobspec import SPEC_NAME, JobSpec, read_spec
from prodagent.payload.report import (
    LOG_NAME,
    REPORT_NAME,
    JobReport,
    RunResult,
    evaluate,
    write_report,
)
from prodagent.payload.stageout import stage_out_output
from prodagent.payload.steps import keep_outputs, run_steps
from prodagent.payload.transformations import build_argv, child_env
from prodagent.payload.watchdog import Watchdog

_PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prodagent.payload.runjob")
    parser.add_argument("jobdir", type=Path, help=f"directory holding {SPEC_NAME}")
    jobdir: Path = parser.parse_args(argv).jobdir.resolve()
    started_at = datetime.now(UTC)
    try:
        spec = read_spec(jobdir)
    except (OSError, ValueError) as exc:
        reason = f"cannot use {jobdir / SPEC_NAME}: {exc.__class__.__name__}: {exc}"
        return finish(jobdir, failure_report(jobdir, codes.BAD_SPEC, reason, started_at))
    try:
        prepare(spec, jobdir)
        if spec.steps:
            result, step_results = run_steps(spec, jobdir, execute)
            report = keep_outputs(spec, jobdir, evaluate(spec, jobdir, result).model_copy(update={"steps": step_results}))
        else:
            result = execute(spec, jobdir)
            report = evaluate(spec, jobdir, result)
        remove_partial_output(spec, jobdir)
        if report.ok and spec.stageout is not None:
            report = stage_out_output(spec, report)
    except Exception as exc:  # noqa: BLE001 - the wrapper must always leave a report
        traceback.print_exc()
        reason = f"wrapper error: {exc.__class__.__name__}: {exc}"
        report = failure_report(jobdir, codes.WRAPPER_ERROR, reason, started_at, spec)
    return finish(jobdir, report)


def prepare(spec: JobSpec, jobdir: Path) -> None:
    for stale in (jobdir / REPORT_NAME, jobdir / LOG_NAME):
        stale.unlink(missing_ok=True)
    if spec.output_path:
        output = (jobdir / spec.output_path).resolve()
        if output not in {(jobdir / p).resolve() for p in spec.inputs if "://" not in p}:
            output.unlink(missing_ok=True)


def execute(spec: JobSpec, jobdir: Path) -> RunResult:
    """Run the transformation to its end and measure it."""
    argv = build_argv(spec)
    started_at = datetime.now(UTC)
    start = time.monotonic()
    with open(jobdir / LOG_NAME, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=jobdir,
                env=child_env(spec, jobdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            ended_at = datetime.now(UTC)
            reason = f"cannot start {argv[0]!r}: {exc.__class__.__name__}: {exc}"
            wall_s = time.monotonic() - start
            return RunResult(None, wall_s, 0.0, 0.0, started_at, ended_at, exec_error=reason)
        watchdog = Watchdog(proc.pid, spec.memory_mb, spec.time_limit_s)
        previous = _forward_stop_signals(watchdog)
        try:
            watchdog.start()
            # wait4 rather than Popen.wait: it also gives this child's own resource usage
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            watchdog.finish()
            _restore_signals(previous)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.monotonic() - start
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return RunResult(
        exit_code=code,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        # ru_maxrss includes the wrapper image the child held between fork and exec (~20 MB):
        # a harmless floor, the price of the fork that PDEATHSIG needs
        max_rss_mb=max(usage.ru_maxrss / 1024, watchdog.peak_rss_mb),
        started_at=started_at,
        ended_at=datetime.now(UTC),
        limit_code=watchdog.limit_code,
        limit_reason=watchdog.limit_reason,
    )


def remove_partial_output(spec: JobSpec, jobdir: Path) -> None:
    """A failed transformation leaves OUT.part behind by design; the job dir need not keep it."""
    if spec.output_path:
        output = jobdir / spec.output_path
        output.with_name(output.name + ".part").unlink(missing_ok=True)


def failure_report(
    jobdir: Path,
    error_code: int,
    reason: str,
    started_at: datetime,
    spec: JobSpec | None = None,
) -> JobReport:
    """A report for a job the wrapper could not run or judge."""
    return JobReport(
        job_id=spec.job_id if spec else jobdir.name,
        job_type=spec.job_type if spec else None,
        transformation=spec.transformation if spec else None,
        retry=spec.retry if spec else 0,
        exit_code=None,
        status="failed",
        error_code=error_code,
        error_reason=reason,
        log_path=str(jobdir / LOG_NAME),
        started_at=started_at,
        ended_at=datetime.now(UTC),
    )


def finish(jobdir: Path, report: JobReport) -> int:
    write_report(jobdir, report)
    status = codes.wrapper_exit_status(report.exit_code or 0, report.error_code)
    outcome = report.status if report.ok else f"{report.status} {report.error_code}"
    print(
        f"runjob {report.job_id}: {outcome}, {report.events_processed} events, "
        f"{report.wall_s:.1f} s; exit {status}",
        file=sys.stderr if status else sys.stdout,
        flush=True,
    )
    return status


def _die_with_parent() -> None:
    """In the child, before exec: be killed if the wrapper dies, so no payload is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _forward_stop_signals(watchdog: Watchdog) -> dict[int, object]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        watchdog.request_stop(signum)

    previous: dict[int, object] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def _restore_signals(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
