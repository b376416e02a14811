"""Fixtures for the payload tests: job directories, the wrapper run as batch plugins run it,
and a few real production files shared by the session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from prodagent.payload.jobspec import JobSpec, write_spec
from prodagent.payload.report import JobReport, read_report

PYTHON = sys.executable


def make_job(root: Path, **fields: Any) -> Path:
    """A job directory holding job.json for a spec built from `fields`."""
    jobdir = root / fields["job_id"]
    jobdir.mkdir(parents=True, exist_ok=True)
    write_spec(jobdir, JobSpec(**fields))
    return jobdir


def start_wrapper(jobdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "prodagent.payload.runjob", str(jobdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_wrappers(jobdirs: Sequence[Path], timeout: float = 120) -> list[tuple[int, JobReport]]:
    """Run the wrapper on each job directory, all at once; (exit status, report) per job."""
    procs = [start_wrapper(d) for d in jobdirs]
    results = []
    for jobdir, proc in zip(jobdirs, procs, strict=True):
        rc = proc.wait(timeout=timeout)
        report = read_report(jobdir)
        assert report is not None, f"{jobdir}: no report.json"
        results.append((rc, report))
    return results


def production(job_id: str, seed: int, events: int, first_event: int, **extra: Any) -> dict:
    return dict(
        job_id=job_id,
        job_type="production",
        transformation="pythia",
        events=events,
        seed=seed,
        run=7,
        first_event=first_event,
        output_path="out.root",
        **extra,
    )


@pytest.fixture(scope="session")
def produced(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three successful production jobs (60, 70 and 80 events, consecutive event numbers)."""
    root = tmp_path_factory.mktemp("produced")
    counts = (60, 70, 80)
    firsts = (1, 61, 131)
    jobdirs = [
        make_job(root, **production(f"prod{i}", seed=100 + i, events=n, first_event=f))
        for i, (n, f) in enumerate(zip(counts, firsts, strict=True))
    ]
    for rc, report in run_wrappers(jobdirs):
        assert rc == 0, report.error_reason
    return jobdirs
