"""A reconstruction's side outputs and their merge policies.

Beside its mDST `X.root` a reconstruction job writes `X.hist.root` (histograms) and
`X.dump.txt` (an event dump). When mDSTs are merged, their side outputs follow their own
policy: histograms are added bin by bin (the merged contents must equal the sum of the inputs',
checked after writing), dumps are archived together (`Y.dumps.tar`), never merged.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def side_outputs(mdst: Path) -> tuple[Path, Path]:
    """The histogram file and event dump beside the mDST `X.root`."""
    stem = mdst.name.removesuffix(".root")
    return mdst.with_name(f"{stem}.hist.root"), mdst.with_name(f"{stem}.dump.txt")


def dump_archive(merged: Path) -> Path:
    return merged.with_name(merged.name.removesuffix(".root") + ".dumps.tar")


def add_histograms(inputs: list[Path], out: Path) -> dict[str, float]:
    """Write the bin-by-bin sum of every histogram of `inputs` to `out`; return each one's total.
    ValueError if the inputs do not hold the same histograms with the same binning, or if the
    written sums differ from the inputs' (the file is then not left behind)."""
    import numpy as np
    import uproot

    sums: dict[str, object] = {}
    expected: dict[str, np.ndarray] = {}
    for path in inputs:
        with uproot.open(path) as file:
            names = sorted(file.keys(cycle=False))
            if sums and names != sorted(sums):
                raise ValueError(f"{path}: histograms {names}, expected {sorted(sums)}")
            for name in names:
                h = file[name].to_hist()
                sums[name] = h if name not in sums else sums[name] + h  # type: ignore[operator]
                expected[name] = expected.get(name, 0) + h.values(flow=True)
    part = out.with_name(out.name + ".part")
    with uproot.recreate(part) as file:
        for name, h in sums.items():
            file[name] = h
    with uproot.open(part) as file:
        for name, values in expected.items():
            if not np.array_equal(file[name].values(flow=True), values):
                part.unlink()
                raise ValueError(f"merged histogram {name} differs from the sum of its inputs")
    os.replace(part, out)
    return {name: float(v.sum()) for name, v in expected.items()}


def merge_side_outputs(inputs: list[str] | list[Path], merged: Path) -> str | None:
    """Merge the side outputs of `inputs` beside `merged`, if every input has them; a line saying
    what was done, or None when the inputs have no side outputs (e.g. generator files). Inputs
    read from a storage element (URLs) have none: side outputs stay in the work area."""
    if any("://" in str(p) for p in inputs):
        return None
    sides = [side_outputs(Path(p)) for p in inputs]
    if not sides or not all(h.is_file() and d.is_file() for h, d in sides):
        return None
    hist, _ = side_outputs(merged)
    totals = add_histograms([h for h, _ in sides], hist)
    archive = dump_archive(merged)
    part = archive.with_name(archive.name + ".part")
    with tarfile.open(part, "w") as tar:
        for _, dump in sides:
            tar.add(dump, arcname=dump.name)
    os.replace(part, archive)
    added = ", ".join(f"{k} {v:g}" for k, v in sorted(totals.items()))
    return f"Histograms added from {len(sides)} files ({added}); {len(sides)} dumps archived"
