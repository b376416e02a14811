"""The Pythia transformation run as a command: reproducibility, content and exit statuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import uproot

from prodagent.payload import rootio

from .conftest import PYTHON


def generate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "prodagent.payload.generate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_all(path: Path) -> dict[str, object]:
    return uproot.open(path)["events"].arrays(library="np")


def test_same_seed_same_content_whatever_the_chunking(tmp_path: Path) -> None:
    common = ["--events", "60", "--run", "4", "--first-event", "11"]
    runs = [
        generate(*common, "--seed", "17", "--chunk", "60", "--out", "a.root", cwd=tmp_path),
        generate(*common, "--seed", "17", "--chunk", "25", "--out", "b.root", cwd=tmp_path),
        generate(*common, "--seed", "18", "--out", "c.root", cwd=tmp_path),
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1] == "End of Job: 60 events"
    a, b, c = (read_all(tmp_path / n) for n in ("a.root", "b.root", "c.root"))
    for name in ("nFinal", "sumPt", "Part_pt", "Part_pid"):
        assert all(np.array_equal(x, y) for x, y in zip(a[name], b[name], strict=True)), name
    assert not np.array_equal(a["sumPt"], c["sumPt"])
    digests = [rootio.content_digest(tmp_path / n) for n in ("a.root", "b.root", "c.root")]
    assert digests[0] == digests[1] != digests[2]
    assert f"Content digest: {digests[0]}" in runs[0].stdout
    # chunk 25 of 60 events: one progress line per chunk, with the last event number
    progress = [line.split(", elapsed")[0] for line in runs[1].stdout.splitlines()]
    assert [line for line in progress if line.startswith("Processed")] == [
        "Processed 25/60 events. Run 4, last Event 35",
        "Processed 50/60 events. Run 4, last Event 60",
        "Processed 60/60 events. Run 4, last Event 70",
    ]


def test_tree_content_is_consistent(tmp_path: Path) -> None:
    run = generate(
        "--events",
        "40",
        "--seed",
        "3",
        "--run",
        "9",
        "--first-event",
        "1001",
        "--process",
        "hardqcd",
        "--out",
        "h.root",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    file = uproot.open(tmp_path / "h.root")
    assert file.classname_of("events") == "TTree"
    events = file["events"].arrays(library="np")
    assert list(events["event"]) == list(range(1001, 1041))
    assert set(events["run"]) == {9}
    assert np.array_equal(events["nFinal"], events["nPart"])
    assert np.all(events["nCharged"] <= events["nFinal"])
    assert np.all(events["nCharged"] > 0)
    # HardQCD with pTHatMin 20 GeV: every event's hard scale is above it
    assert np.all(events["pTHat"] >= 20.0)
    sum_pt = np.array([pt.sum() for pt in events["Part_pt"]])
    assert np.allclose(sum_pt, events["sumPt"], rtol=1e-4)
    provenance = json.loads(str(file["provenance"]))
    assert provenance["seed"] == 3 and provenance["events"] == 40
    assert not (tmp_path / "h.root.part").exists()


def test_bad_arguments_exit_2_quickly(tmp_path: Path) -> None:
    run = generate("--events", "10", "--seed", "0", "--out", "x.root", cwd=tmp_path)
    assert run.returncode == 2
    assert "--seed" in run.stderr
    assert not list(tmp_path.iterdir())


def test_a_genuine_init_failure_exits_3(tmp_path: Path) -> None:
    run = generate(
        "--events",
        "10",
        "--seed",
        "1",
        "--out",
        "x.root",
        "--fail-mode",
        "badconfig",
        cwd=tmp_path,
    )
    assert run.returncode == 3
    assert "PYTHIA Abort" in run.stdout + run.stderr
    assert "End of Job" not in run.stdout
    assert not (tmp_path / "x.root").exists()


def test_exit_mode_fails_mid_run_and_publishes_nothing(tmp_path: Path) -> None:
    run = generate(
        "--events",
        "50",
        "--seed",
        "1",
        "--out",
        "x.root",
        "--chunk",
        "10",
        "--fail-mode",
        "exit",
        "--fail-after",
        "20",
        "--fail-code",
        "70",
        "--fail-message",
        "A FATAL ERROR APPEARED",
        cwd=tmp_path,
    )
    assert run.returncode == 70
    assert "Processed 20/50 events" in run.stdout
    assert "Processed 30/50" not in run.stdout
    assert "A FATAL ERROR APPEARED" in run.stderr
    assert not (tmp_path / "x.root").exists()
    assert (tmp_path / "x.root.part").exists()  # left by design; the wrapper removes it
