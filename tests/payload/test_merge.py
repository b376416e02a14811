"""The merge transformation: it holds exactly its inputs' events, or it leaves nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import uproot

from prodagent.payload import codes, rootio

from .conftest import PYTHON, make_job, run_wrappers


def merge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "prodagent.payload.merge", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def outputs(produced: list[Path]) -> list[Path]:
    return [d / "out.root" for d in produced]


def run_event_pairs(path: Path) -> set[tuple[int, int]]:
    arrays = uproot.open(path)["events"].arrays(["run", "event"], library="np")
    return set(zip(arrays["run"].tolist(), arrays["event"].tolist(), strict=True))


def test_merge_job_holds_the_sum_of_its_inputs(tmp_path: Path, produced: list[Path]) -> None:
    inputs = outputs(produced)
    jobdir = make_job(
        tmp_path,
        job_id="merge1",
        job_type="merge",
        transformation="merge",
        inputs=[str(p) for p in inputs],
        input_events=[60, 70, 80],
        output_path="merged.root",
    )
    [(rc, report)] = run_wrappers([jobdir])
    assert rc == 0, report.error_reason
    merged = jobdir / "merged.root"
    assert report.events_processed == 210
    assert report.outputs[0].events == uproot.open(merged)["events"].num_entries == 210
    assert (report.outputs[0].run, report.outputs[0].first_event) == (7, 1)
    assert report.inputs == [str(p) for p in inputs]
    expected = set().union(*(run_event_pairs(p) for p in inputs))
    assert run_event_pairs(merged) == expected and len(expected) == 210
    # the particles survive too, in input order
    merged_pt = uproot.open(merged)["events"]["Part_pt"].array(library="np")
    input_pt = [
        pt for p in inputs for pt in uproot.open(p)["events"]["Part_pt"].array(library="np")
    ]
    assert all(np.array_equal(a, b) for a, b in zip(merged_pt, input_pt, strict=True))


def test_chunking_does_not_change_the_content(tmp_path: Path, produced: list[Path]) -> None:
    inputs = outputs(produced)
    whole = merge("--out", "whole.root", *inputs, cwd=tmp_path)
    chunked = merge(
        "--out", "chunked.root", "--step", "17", "--compression", "lz4", *inputs, cwd=tmp_path
    )
    assert whole.returncode == chunked.returncode == 0, whole.stderr + chunked.stderr
    assert chunked.stdout.splitlines()[-1] == "End of Job: 210 events"
    assert rootio.content_digest(tmp_path / "whole.root") == rootio.content_digest(
        tmp_path / "chunked.root"
    )


def test_a_merge_that_loses_events_is_refused(tmp_path: Path, produced: list[Path]) -> None:
    jobdir = make_job(
        tmp_path,
        job_id="lossy",
        job_type="merge",
        transformation="merge",
        inputs=[str(p) for p in outputs(produced)],
        input_events=[60, 70, 80],
        output_path="merged.root",
        params={"drop_events": 3},
    )
    [(rc, report)] = run_wrappers([jobdir])
    assert (rc, report.status, report.error_code) == (4, "failed", codes.MERGE_COUNT_MISMATCH)
    assert "207" in (report.error_reason or "")  # the merged file held 207 of 210
    assert report.outputs == []
    assert not (jobdir / "merged.root").exists()
    assert not (jobdir / "merged.root.part").exists()


def test_wrong_expected_count_is_refused(tmp_path: Path, produced: list[Path]) -> None:
    run = merge("--out", "m.root", "--expect-events", "211", *outputs(produced), cwd=tmp_path)
    assert run.returncode == codes.MERGE_COUNT_MISMATCH
    assert "event count mismatch" in run.stderr
    assert "End of Job" not in run.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_duplicate_events_are_refused(tmp_path: Path, produced: list[Path]) -> None:
    first = outputs(produced)[0]
    run = merge("--out", "m.root", first, first, cwd=tmp_path)
    assert run.returncode == codes.MERGE_DUPLICATES
    assert "60 duplicate" in run.stderr
    assert not (tmp_path / "m.root").exists()


def test_unreadable_input_is_refused(tmp_path: Path, produced: list[Path]) -> None:
    (tmp_path / "junk.root").write_bytes(b"not a ROOT file")
    run = merge("--out", "m.root", outputs(produced)[0], "junk.root", cwd=tmp_path)
    assert run.returncode == codes.MERGE_BAD_INPUT
    assert "junk.root" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.root"]
