"""A two-step job (StepChain: generate, then reconstruct) run by the job wrapper: the second
step fails on the first attempt; the retry reuses the first step's output (its step report
says so, and the generator does not run again) and the job's output is right. A kept
intermediate output is placed and reported with its step and dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from prodagent.payload import rootio
from prodagent.payload.jobspec import FailSpec, JobSpec, KeepSpec, StepSpec, write_spec
from prodagent.payload.report import read_report
from prodrequest.spec import workflow_adapter


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


def test_a_kept_intermediate_output_is_placed_and_reported(tmp_path: Path) -> None:
    attempt, out, kept = tmp_path / "job" / "attempt-0", tmp_path / "out" / "k-1.root", tmp_path / "gen" / "k-1.root"
    attempt.mkdir(parents=True)
    write_spec(attempt, JobSpec(
        job_id="k-1", job_type="production", transformation="pythia", params={"process": "minbias"},
        events=10, first_event=1, run=4, seed=3, output_path=str(out),
        steps=[StepSpec(name="reco", transformation="reconstruct", input="main")],
        keep=[KeepSpec(step="main", dataset="/Gen/Test/GEN", path=str(kept))],
    ))
    subprocess.run([sys.executable, "-m", "prodagent.payload.runjob", str(attempt)], timeout=300)
    report = read_report(attempt)
    assert report is not None and report.status == "success", report and report.error_reason
    assert [(k.step, k.dataset, k.path, k.events, k.run) for k in report.kept] == [
        ("main", "/Gen/Test/GEN", str(kept), 10, 4)]
    assert rootio.count_entries(kept) == 10 and out.is_file()


def test_only_intermediate_steps_with_their_own_dataset_may_be_kept() -> None:
    doc = {
        "name": "keep-test", "kind": "montecarlo", "events": {"total": 10, "per_job": 10},
        "payload": {"transformation": "pythia", "version": "1", "keep": True},
        "steps": [{"name": "reco", "transformation": "reconstruct", "version": "1"}],
        "output": {"dataset": "/Keep/Test/MDST", "tier": "MDST"},
    }
    with pytest.raises(ValidationError, match="payload.output"):
        workflow_adapter.validate_python(doc)
    doc["payload"]["output"] = {"dataset": "/Keep/Test/GEN", "tier": "GEN"}  # type: ignore[index]
    assert workflow_adapter.validate_python(doc).kept_steps()[0][0] == "main"
    doc["steps"][0] |= {"keep": True, "output": {"dataset": "/Keep/Test/XX", "tier": "XX"}}  # type: ignore[index]
    with pytest.raises(ValidationError, match="steps.0.keep"):
        workflow_adapter.validate_python(doc)
