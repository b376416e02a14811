"""A two-step job (StepChain: generate, then reconstruct) run by the job wrapper: the second
step fails on the first attempt; the retry reuses the first step's output (its step report
says so, and the generator does not run again) and the job's output is right."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prodagent.payload import rootio
from prodagent.payload.jobspec import FailSpec, JobSpec, StepSpec, write_spec
from prodagent.payload.report import read_report


def run_attempt(jobdir: Path, retry: int, out: Path) -> None:
    attempt = jobdir / f"attempt-{retry}"
    attempt.mkdir(parents=True)
    spec = JobSpec(
        job_id="steps-1", job_type="production", transformation="pythia", params={"process": "minbias"},
        events=20, first_event=1, run=9, seed=5, retry=retry, output_path=str(out),
        steps=[StepSpec(name="reco", transformation="reconstruct", input="main",
                        fail=FailSpec(mode="exit", code=66) if retry == 0 else None)],
    )
    write_spec(attempt, spec)
    subprocess.run([sys.executable, "-m", "prodagent.payload.runjob", str(attempt)], timeout=300)


def test_a_failed_second_step_is_retried_without_rerunning_the_first(tmp_path: Path) -> None:
    jobdir, out = tmp_path / "job", tmp_path / "out" / "steps-1.root"
    out.parent.mkdir()
    run_attempt(jobdir, 0, out)
    first = read_report(jobdir / "attempt-0")
    assert first is not None and first.status == "failed" and first.exit_code == 66
    assert [(s.name, s.status, s.reused) for s in first.steps] == [("main", "success", False), ("reco", "failed", False)]
    assert not out.exists()

    run_attempt(jobdir, 1, out)
    second = read_report(jobdir / "attempt-1")
    assert second is not None and second.status == "success", second.error_reason
    assert [(s.name, s.status, s.reused, s.attempt) for s in second.steps] == [
        ("main", "success", True, 0), ("reco", "success", False, 1)]
    log = (jobdir / "attempt-1" / "job.log").read_text()
    assert "Pythia" not in log and "End of Job: 20 events" in log  # only the reconstruction ran
    cols = rootio.open_tree(out).arrays(["run", "event", "nJets"], library="np")
    assert cols["event"].tolist() == list(range(1, 21)) and set(cols["run"].tolist()) == {9}
