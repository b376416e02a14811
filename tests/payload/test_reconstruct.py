"""The reconstruction transformation on test-written input: the mDST holds every input event
once, in order; the histograms hold its jets; the dump its first events; failure knobs fail it
without leaving an mDST."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import uproot

from prodagent.payload import rootio
from prodagent.payload.side_outputs import dump_archive, side_outputs
from tests.payload.rawfiles import write_raw


def reconstruct(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    inputs = [write_raw(tmp_path / f"cdr0000{i}-7.raw", 7, 1 + 30 * i, 30, seed=i) for i in (1, 2)]
    out = tmp_path / "mdst.root"
    done = subprocess.run(
        [sys.executable, "-m", "prodagent.payload.reconstruct", "--out", str(out),
         "--hist", str(tmp_path / "h.root"), "--dump", str(tmp_path / "d.txt"), *extra,
         "--", *map(str, inputs)],
        capture_output=True, text=True, timeout=120,
    )
    return done, out


def test_reconstruct_writes_mdst_hist_and_dump(tmp_path: Path) -> None:
    done, out = reconstruct(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "End of Job: 60 events" in done.stdout
    tree = rootio.open_tree(out)
    cols = tree.arrays(["run", "event", "nJets", "Jet_pt", "HT"], library="ak")
    assert set(cols["run"].tolist()) == {7}
    assert cols["event"].tolist() == list(range(31, 91))  # both inputs, each event once, in order
    assert cols["nJets"].tolist() == [len(j) for j in cols["Jet_pt"].tolist()]
    assert sum(cols["nJets"].tolist()) > 0
    hists = uproot.open(tmp_path / "h.root")
    n_jets = hists["n_jets"].values()
    assert n_jets.sum() == 60  # one entry per event
    assert np.dot(np.arange(len(n_jets)), n_jets) == sum(cols["nJets"].tolist())
    assert len((tmp_path / "d.txt").read_text().splitlines()) == 5


def test_an_injected_failure_leaves_no_mdst(tmp_path: Path) -> None:
    done, out = reconstruct(tmp_path, "--fail-mode=exit", "--fail-after=10", "--fail-code=65")
    assert done.returncode == 65
    assert "End of Job" not in done.stdout and not out.exists()


def test_merging_mdsts_adds_their_histograms_and_archives_dumps(tmp_path: Path) -> None:
    outs = []
    for i in (1, 2):
        raw = write_raw(tmp_path / f"cdr0000{i}-8.raw", 8, 1 + 20 * i, 20, seed=10 + i)
        out = tmp_path / f"job{i}.root"
        hist, dump = side_outputs(out)
        subprocess.run([sys.executable, "-m", "prodagent.payload.reconstruct", "--out", str(out),
                        "--hist", str(hist), "--dump", str(dump), "--", str(raw)], check=True,
                       capture_output=True, timeout=120)
        outs.append(out)
    merged = tmp_path / "merged.root"
    done = subprocess.run([sys.executable, "-m", "prodagent.payload.merge", "--out", str(merged),
                           "--expect-events", "40", "--", *map(str, outs)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Histograms added from 2 files" in done.stdout
    merged_hist = uproot.open(side_outputs(merged)[0])
    for name in ("jet_pt", "n_jets"):
        parts = [uproot.open(side_outputs(o)[0])[name].values(flow=True) for o in outs]
        assert np.array_equal(merged_hist[name].values(flow=True), parts[0] + parts[1])
    with tarfile.open(dump_archive(merged)) as tar:
        assert sorted(tar.getnames()) == ["job1.dump.txt", "job2.dump.txt"]
