"""COMPASS-style input files for processing tests: `cdrCHUNK-RUN.raw`, each a small generator-like
`events` tree (run, event, sumPt, Part_pt/eta/phi) written with uproot, no Pythia needed."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from prodagent.payload import rootio

NAME_PATTERN = r"cdr(?P<chunk>\d+)-(?P<run>\d+)\.raw$"


def write_raw(path: Path, run: int, first_event: int, events: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    counts = rng.integers(5, 40, size=events)
    n = int(counts.sum())
    pt = rng.exponential(4.0, n).astype(np.float32)
    eta = rng.uniform(-2.5, 2.5, n).astype(np.float32)
    phi = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    columns = {
        "run": np.full(events, run, dtype=np.uint32),
        "event": np.arange(first_event, first_event + events, dtype=np.uint64),
        "sumPt": np.bincount(np.repeat(np.arange(events), counts), weights=pt, minlength=events).astype(np.float32),
        "Part_pt": ak.unflatten(pt, counts), "Part_eta": ak.unflatten(eta, counts),
        "Part_phi": ak.unflatten(phi, counts),
    }
    records = rootio.to_records(columns)
    with uproot.recreate(path) as file:
        file.mktree(rootio.TREE, rootio.tree_types(records)).extend(records)
    return path


def write_runs(directory: Path, runs: dict[int, int], events: int) -> list[dict[str, object]]:
    """`runs[run]` chunks of `events` events for each run; the file list of a workflow (lfn and
    events only: run and chunk are for the name pattern to find)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for run, chunks in runs.items():
        for chunk in range(1, chunks + 1):
            path = directory / f"cdr{12000 + chunk:05d}-{run}.raw"
            write_raw(path, run, (chunk - 1) * events + 1, events, seed=run * 100 + chunk)
            files.append({"lfn": str(path), "events": events})
    return files
