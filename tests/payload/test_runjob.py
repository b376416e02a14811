"""The job wrapper end to end: real Pythia jobs, their reports, and every way they can fail."""

from __future__ import annotations

import os
import shutil
import signal
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import uproot

from prodagent.payload import codes, faults
from prodagent.payload.jobspec import JobSpec
from prodagent.payload.report import JobReport, RunResult, evaluate, read_report

from .conftest import make_job, production, run_wrappers, start_wrapper


def test_success_report_matches_the_file(produced: list[Path]) -> None:
    jobdir = produced[0]
    report = read_report(jobdir)
    assert report is not None and report.ok
    assert (report.exit_code, report.error_code, report.error_reason) == (0, None, None)
    assert report.events_processed == 60 and report.end_of_job_seen
    [output] = report.outputs
    path = jobdir / "out.root"
    assert output.path == str(path)
    data = path.read_bytes()
    assert output.size == len(data)
    assert output.adler32 == f"{zlib.adler32(data):08x}"
    assert output.events == uproot.open(path)["events"].num_entries == 60
    assert (output.run, output.first_event) == (7, 1)
    assert report.cpu_s > 0 and 0 < report.wall_s < 60 and report.max_rss_mb > 50
    assert report.started_at <= report.ended_at
    assert "End of Job: 60 events" in Path(report.log_path).read_text()
    # atomic writes leave no temporary files; the .part was renamed away
    assert sorted(p.name for p in jobdir.iterdir()) == [
        "job.json",
        "job.log",
        "out.root",
        "report.json",
    ]


def _seed_failing_only_on_first_try() -> int:
    return next(
        s for s in range(1, 1000) if faults.draw(s, "0", 0.5) and not faults.draw(s, "1", 0.5)
    )


# job id -> (extra spec fields, expected wrapper exit status, expected report error code)
FAILURES: dict[str, tuple[dict, int, int | None]] = {
    "exit": ({"fail": {"mode": "exit", "code": 70, "after": 10}}, 70, 70),
    "fatal": ({"fail": {"mode": "fatal"}}, 66, 66),
    "memory": ({"fail": {"mode": "memory", "after": 5}}, 66, 66),
    "segv": ({"fail": {"mode": "segv"}}, 139, 139),
    "nooutput": ({"fail": {"mode": "nooutput"}}, 82, codes.MISSING_OUTPUT),
    "empty": ({"fail": {"mode": "empty"}}, 83, codes.EMPTY_OUTPUT),
    "noendofjob": ({"fail": {"mode": "noendofjob"}}, 84, codes.NO_END_OF_JOB),
    "badconfig": ({"fail": {"mode": "badconfig"}}, 3, codes.GEN_INIT_FAILED),
    "hang": ({"fail": {"mode": "hang"}, "time_limit_s": 4}, 91, codes.TIME_LIMIT),
    "rsslimit": ({"memory_mb": 50, "events": 400}, 90, codes.MEMORY_LIMIT),  # outlives a sample
    "retry0": ({"fail": {"mode": "exit", "rate": 0.5}, "retry": 0}, 66, 66),
    "retry1": ({"fail": {"mode": "exit", "rate": 0.5}, "retry": 1}, 0, None),
}


@pytest.fixture(scope="module")
def failure_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[int, JobReport, Path]]:
    """Every failure job, run at once (they are independent; this keeps the suite fast)."""
    root = tmp_path_factory.mktemp("failures")
    retry_seed = _seed_failing_only_on_first_try()
    jobdirs = []
    for job_id, (extra, _, _) in FAILURES.items():
        seed = retry_seed if job_id.startswith("retry") else 11
        fields = production(job_id, seed=seed, events=30, first_event=1, params={"chunk": 10})
        jobdirs.append(make_job(root, **{**fields, **extra}))
    # a stale output from an earlier attempt must not count as this attempt's output
    (root / "nooutput" / "out.root").write_bytes(b"stale")
    results = run_wrappers(jobdirs)
    return {d.name: (rc, report, d) for d, (rc, report) in zip(jobdirs, results, strict=True)}


@pytest.mark.parametrize("job_id", list(FAILURES))
def test_failure_modes_give_their_codes(
    failure_runs: dict[str, tuple[int, JobReport, Path]], job_id: str
) -> None:
    rc, report, jobdir = failure_runs[job_id]
    _, expected_rc, expected_code = FAILURES[job_id]
    assert rc == expected_rc, report.error_reason
    assert report.error_code == expected_code
    assert report.status == ("success" if expected_code is None else "failed")
    assert not (jobdir / "out.root.part").exists()
    if expected_code is not None and job_id not in ("empty", "noendofjob"):
        assert not (jobdir / "out.root").exists()


def test_failure_details(failure_runs: dict[str, tuple[int, JobReport, Path]]) -> None:
    def report(job_id: str) -> JobReport:
        return failure_runs[job_id][1]

    assert report("exit").events_processed == 10  # failed after 10 events, from the progress
    assert "A FATAL ERROR APPEARED" in (report("fatal").error_reason or "")
    assert "Cannot Allocate" in Path(report("memory").log_path).read_text()
    assert "MemoryError" in (report("memory").error_reason or "")
    assert report("segv").exit_code == 139 and "SIGSEGV" in (report("segv").error_reason or "")
    assert report("nooutput").end_of_job_seen and report("nooutput").outputs == []
    assert report("empty").outputs[0].size == 0
    noend = report("noendofjob")
    assert not noend.end_of_job_seen and noend.outputs[0].events == 30
    assert "PYTHIA Abort" in (report("badconfig").error_reason or "")
    assert 4 <= report("hang").wall_s < 15
    assert report("rsslimit").exit_code == 128 + signal.SIGKILL
    assert report("retry1").outputs[0].events == 30


def test_command_transformation_runs_any_argv(tmp_path: Path) -> None:
    ok = make_job(
        tmp_path,
        job_id="echo",
        job_type="production",
        transformation="command",
        params={"argv": ["sh", "-c", "echo End of Job: 0 events; echo $PRODAGENT_JOB_ID"]},
    )
    exit3 = make_job(
        tmp_path,
        job_id="exit3",
        job_type="production",
        transformation="command",
        params={"argv": ["sh", "-c", "echo End of Job: 0 events; exit 3"]},
    )
    silent = make_job(
        tmp_path,
        job_id="silent",
        job_type="production",
        transformation="command",
        params={"argv": ["true"]},
    )
    missing = make_job(
        tmp_path,
        job_id="missing",
        job_type="production",
        transformation="command",
        params={"argv": ["/no/such/program"]},
    )
    (rc_ok, r_ok), (rc3, r3), (rc_silent, r_silent), (rc_missing, r_missing) = run_wrappers(
        [ok, exit3, silent, missing]
    )
    assert (rc_ok, r_ok.status, r_ok.events_processed, r_ok.outputs) == (0, "success", 0, [])
    assert (ok / "job.log").read_text().splitlines() == ["End of Job: 0 events", "echo"]
    assert (rc3, r3.exit_code, r3.error_code) == (3, 3, 3)
    assert (rc_silent, r_silent.error_code) == (84, codes.NO_END_OF_JOB)
    assert (rc_missing, r_missing.error_code, r_missing.exit_code) == (88, codes.EXEC_FAILED, None)


def test_command_outputs_are_checked(tmp_path: Path, produced: list[Path]) -> None:
    source = produced[0] / "out.root"  # 60 events
    jobs = {
        "right": (60, f"cp {source} out.root"),
        "short": (61, f"cp {source} out.root"),
        "junk": (60, "echo junk > out.root"),
    }
    jobdirs = [
        make_job(
            tmp_path,
            job_id=name,
            job_type="production",
            transformation="command",
            events=events,
            output_path="out.root",
            params={"argv": ["sh", "-c", f"{command} && echo 'End of Job: {events} events'"]},
        )
        for name, (events, command) in jobs.items()
    ]
    (rc_right, right), (rc_short, short), (rc_junk, junk) = run_wrappers(jobdirs)
    assert rc_right == 0 and right.outputs[0].events == 60
    assert (rc_short, short.error_code) == (85, codes.EVENT_COUNT_MISMATCH)
    assert (rc_junk, junk.error_code) == (86, codes.UNREADABLE_OUTPUT)


def test_numbering_that_differs_from_the_spec_fails(tmp_path: Path, produced: list[Path]) -> None:
    shutil.copy(produced[0] / "out.root", tmp_path / "out.root")  # run 7, events 1..60
    (tmp_path / "job.log").write_text("End of Job: 60 events\n")
    now = datetime.now(UTC)
    run = RunResult(exit_code=0, wall_s=1, cpu_s=1, max_rss_mb=1, started_at=now, ended_at=now)
    right = JobSpec(**production("p", seed=1, events=60, first_event=1))
    shifted = JobSpec(**production("p", seed=1, events=60, first_event=61))
    assert evaluate(right, tmp_path, run).ok
    report = evaluate(shifted, tmp_path, run)
    assert report.error_code == codes.NUMBERING_MISMATCH
    assert "event 61" in (report.error_reason or "")


def test_a_bad_spec_still_gives_a_report(tmp_path: Path) -> None:
    jobdir = tmp_path / "job-17"
    jobdir.mkdir()
    (jobdir / "job.json").write_text('{"job_id": "job-17", "job_type": "production"}')
    [(rc, report)] = run_wrappers([jobdir])
    assert (rc, report.error_code, report.job_id) == (81, codes.BAD_SPEC, "job-17")
    assert "transformation" in (report.error_reason or "")


def test_sigterm_to_the_wrapper_stops_the_payload(tmp_path: Path) -> None:
    jobdir = make_job(
        tmp_path,
        job_id="sleeper",
        job_type="production",
        transformation="command",
        params={"argv": ["sh", "-c", "sleep 60 & wait"]},
    )
    proc = start_wrapper(jobdir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _descendants(proc.pid, "sleep"):
        time.sleep(0.05)
    sleepers = _descendants(proc.pid, "sleep")
    assert sleepers, "the payload never started"
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 92
    report = read_report(jobdir)
    assert report is not None and report.error_code == codes.TERMINATED
    psutil.wait_procs(sleepers, timeout=5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in sleepers)


def _descendants(pid: int, name: str) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == name]
    except psutil.Error:
        return []
