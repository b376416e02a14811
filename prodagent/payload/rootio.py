"""ROOT file conventions of the payload, on top of uproot: tree name, compression, reading
helpers and a content digest.

The event tree is a TTree called `events` (never an RNTuple: uproot >= 5.7 writes an RNTuple
for `file[name] = {...}`, so trees are made with `mktree` + `extend`). Jagged per-particle
columns share one counter branch (`nPart` for `Part_*`).

ROOT files are not byte-reproducible (uproot stamps a UUID and the time), so "the same file"
means the same content: `ContentDigest` hashes each branch's values in entry order, which gives
the same digest whatever the chunking.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import awkward as ak
import numpy as np
import uproot

TREE = "events"
PROVENANCE = "provenance"

COMPRESSIONS: dict[str, Any] = {
    "zlib1": uproot.ZLIB(1),
    "lz4": uproot.LZ4(1),
    "zstd": uproot.ZSTD(1),
    "none": None,
}


class ContentDigest:
    """sha256 of a tree's content, independent of how the entries are chunked."""

    def __init__(self) -> None:
        self._hashers: dict[str, Any] = {}

    def update(self, columns: Mapping[str, Any]) -> None:
        """Feed the next entries: {branch name: numpy array or (jagged) awkward array}."""
        for name, column in columns.items():
            if isinstance(column, ak.Array) and column.ndim > 1:
                self._feed(f"{name}#counts", np.asarray(ak.num(column, axis=1), dtype=np.int64))
                column = ak.flatten(column, axis=1)
            self._feed(name, ak.to_numpy(column))

    def _feed(self, key: str, values: np.ndarray) -> None:
        hasher = self._hashers.setdefault(key, hashlib.sha256())
        hasher.update(np.ascontiguousarray(values).tobytes())

    def hexdigest(self) -> str:
        total = hashlib.sha256()
        for name in sorted(self._hashers):
            total.update(name.encode() + b"\0" + self._hashers[name].digest())
        return total.hexdigest()


def to_records(columns: Mapping[str, Any]) -> dict[str, Any]:
    """Group jagged columns `X_y` into one record `X` with field `y`, so that they share one
    counter branch `nX` when written; other columns pass through."""
    out: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}
    for name, column in columns.items():
        outer, _, inner = name.partition("_")
        if isinstance(column, ak.Array) and column.ndim > 1 and inner:
            records.setdefault(outer, {})[inner] = column
        else:
            out[name] = column
    for outer, fields in records.items():
        out[outer] = ak.zip(fields)
    return out


def tree_types(records: Mapping[str, Any]) -> dict[str, Any]:
    """`mktree` branch types for the output of `to_records`, as datashape strings."""
    types: dict[str, Any] = {}
    for name, column in records.items():
        types[name] = str(ak.Array(column).type.content)
    return types


def open_file(path: str | os.PathLike[str]) -> Any:
    """A ROOT file by path or root:// URL. URLs go through uproot's own XRootD source: its fsspec
    route (fsspec-xrootd) hands NumPy integers to XRootD's read and fails (scikit-hep/uproot5#1582)."""
    if str(path).startswith(("root://", "xroot://")):
        return uproot.open(str(path), handler=uproot.source.xrootd.XRootDSource)
    return uproot.open(path)


def open_tree(path: str | os.PathLike[str]) -> Any:
    """The `events` TTree of a file; ValueError if it is missing or is not a TTree."""
    file = open_file(path)
    if TREE not in file:
        raise ValueError(f"{path}: no '{TREE}' tree")
    classname = file.classname_of(TREE)
    if classname != "TTree":
        raise ValueError(f"{path}: '{TREE}' is a {classname}, not a TTree")
    return file[TREE]


def count_entries(path: str | os.PathLike[str]) -> int:
    return int(open_tree(path).num_entries)


def data_branches(tree: Any) -> list[str]:
    """Branch names without the counters, which are implied by the jagged branches."""
    counters = {b.count_branch.name for b in tree.branches if b.count_branch is not None}
    return [b.name for b in tree.branches if b.name not in counters]


def iterate_columns(tree: Any, step_size: str | int = "50 MB") -> Iterator[dict[str, Any]]:
    """Chunks of {branch name: array}, without counters: the shape `ContentDigest` hashes."""
    names = data_branches(tree)
    for chunk in tree.iterate(names, step_size=step_size, library="ak"):
        yield {name: chunk[name] for name in names}


def content_digest(path: str | os.PathLike[str]) -> str:
    digest = ContentDigest()
    for columns in iterate_columns(open_tree(path)):
        digest.update(columns)
    return digest.hexdigest()


def first_run_event(path: str | os.PathLike[str]) -> tuple[int | None, int | None]:
    """(run, event) of the first entry, or (None, None) for an empty tree."""
    tree = open_tree(path)
    if tree.num_entries == 0:
        return None, None
    first = tree.arrays(["run", "event"], entry_stop=1, library="np")
    return int(first["run"][0]), int(first["event"][0])


def read_provenance(path: str | os.PathLike[str]) -> str | None:
    file = open_file(path)
    return str(file[PROVENANCE]) if PROVENANCE in file else None
