"""The merge transformation: concatenate the `events` trees of several ROOT files into one.

    python -m prodagent.payload.merge --out OUT [--expect-events N] IN1 IN2 ...   (paths or root:// URLs)
        [--compression zlib1|lz4|zstd|none] [--step "50 MB"] [--seed S] [--drop-events K]
        [--fail-mode M --fail-rate P --fail-code C --fail-after K --fail-salt X --fail-message T]

A merge is accepted only if the merged file holds exactly the events of its inputs:
  * before writing, every input must be a readable TTree with the same branches, the entry
    total must equal --expect-events (when given), and no (run, event) may appear twice;
  * inputs are read and written in chunks of --step, never all at once;
  * after writing, the output is re-read: its entry count must equal the inputs' total and
    its content digest must equal the digest of the inputs' stream.
Only then is OUT.part renamed to OUT; a refused merge leaves no output at all. Inputs that are
reconstruction mDSTs bring their side outputs: histograms are added, dumps archived
(`side_outputs`).
`--drop-events K` is a test knob: the merge silently loses K events, and must be refused.

Exit status: 0 ok, 2 bad arguments, 3 unreadable or inconsistent input, 4 event count or
content mismatch, 5 duplicate (run, event); injected failures exit with --fail-code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import uproot

from prodagent.payload import codes, faults, rootio
from prodagent.payload.jobspec import MAX_SEED
from prodagent.payload.side_outputs import merge_side_outputs


class MergeRefused(Exception):
    """The merge cannot be accepted; `code` is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def say(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prodagent.payload.merge")
    parser.add_argument("inputs", nargs="+", type=source, help="paths or root:// URLs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expect-events", type=int, default=None)
    parser.add_argument("--compression", choices=tuple(rootio.COMPRESSIONS), default="zlib1")
    parser.add_argument(
        "--step", default="50 MB", help='chunk size: "50 MB" or a number of entries'
    )
    parser.add_argument("--seed", type=int, default=1, help="draws the injected failures")
    parser.add_argument("--drop-events", type=int, default=0, help="test knob: lose K events")
    faults.add_arguments(parser)
    return parser


def source(text: str) -> Path | str:
    """An input: a local path, or a URL (root://...) uproot reads directly, kept as written."""
    return text if "://" in text else Path(text)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.out.resolve() in {p.resolve() for p in args.inputs if isinstance(p, Path)}:
        parser.error("--out must not be one of the inputs")
    if args.expect_events is not None and args.expect_events < 0:
        parser.error("--expect-events must be >= 0")
    if args.drop_events < 0:
        parser.error("--drop-events must be >= 0")
    if not 1 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be in 1..{MAX_SEED}")
    if args.step.isdigit():
        args.step = int(args.step)


def inspect_inputs(paths: list[Path | str]) -> tuple[list[Any], dict[str, str], list[int]]:
    """Open every input and check it; return the trees, the branch types and the entries."""
    trees, entries = [], []
    reference: dict[str, str] | None = None
    for path in paths:
        try:
            tree = rootio.open_tree(path)
            types = dict(tree.typenames())
        except Exception as exc:  # noqa: BLE001 - any reason makes the input unusable
            raise MergeRefused(codes.MERGE_BAD_INPUT, f"cannot read input {path}: {exc}") from exc
        if reference is None:
            reference = types
        elif types != reference:
            raise MergeRefused(
                codes.MERGE_BAD_INPUT, f"input {path} has branches {types}, expected {reference}"
            )
        trees.append(tree)
        entries.append(int(tree.num_entries))
    assert reference is not None
    return trees, reference, entries


def count_duplicates(trees: list[Any]) -> int:
    """How many entries repeat a (run, event) pair already seen, over all inputs."""
    try:
        keys = [tree.arrays(["run", "event"], library="np") for tree in trees]
    except Exception as exc:  # noqa: BLE001
        raise MergeRefused(codes.MERGE_BAD_INPUT, f"cannot read run/event: {exc}") from exc
    pairs = np.stack(
        [
            np.concatenate([k["run"].astype(np.uint64) for k in keys]),
            np.concatenate([k["event"].astype(np.uint64) for k in keys]),
        ],
        axis=1,
    )
    return len(pairs) - len(np.unique(pairs, axis=0))


def write_merged(
    args: argparse.Namespace, trees: list[Any], plan: faults.FailurePlan, part: Path
) -> str:
    """Stream every input into `part`; return the content digest of what was read."""
    names = rootio.data_branches(trees[0])
    empty = trees[0].arrays(names, entry_stop=0, library="ak")
    types = rootio.tree_types(rootio.to_records({n: empty[n] for n in names}))
    digest = rootio.ContentDigest()
    to_drop = args.drop_events
    done = 0
    with uproot.recreate(part, compression=rootio.COMPRESSIONS[args.compression]) as file:
        out_tree = file.mktree(rootio.TREE, types)
        for path, tree in zip(args.inputs, trees, strict=True):
            try:
                for columns in rootio.iterate_columns(tree, step_size=args.step):
                    if plan.fails_mid_run() and done >= plan.after:
                        faults.trigger(plan, done)
                    digest.update(columns)
                    n = len(columns["run"])
                    if to_drop:
                        cut = min(to_drop, n)
                        columns = {k: v[cut:] for k, v in columns.items()}
                        to_drop -= cut
                    out_tree.extend(rootio.to_records(columns))
                    done += n
            except Exception as exc:  # noqa: BLE001 - a basket that does not decompress, ...
                raise MergeRefused(codes.MERGE_BAD_INPUT, f"cannot merge {path}: {exc}") from exc
            say(f"Merged {path}: {done} events so far")
        if plan.fails_mid_run():
            faults.trigger(plan, done)
        file[rootio.PROVENANCE] = json.dumps(
            {"merged_from": [provenance_of(p) for p in args.inputs], "digest": digest.hexdigest()},
            sort_keys=True,
        )
    return digest.hexdigest()


def provenance_of(path: Path | str) -> Any:
    text = rootio.read_provenance(path)
    try:
        return {"path": str(path), "provenance": json.loads(text) if text else None}
    except json.JSONDecodeError:
        return {"path": str(path), "provenance": text}


def verify(part: Path, total: int, digest_hex: str) -> None:
    written = rootio.count_entries(part)
    if written != total:
        raise MergeRefused(
            codes.MERGE_COUNT_MISMATCH,
            f"event count mismatch: merged file holds {written} events, inputs hold {total}",
        )
    if rootio.content_digest(part) != digest_hex:
        raise MergeRefused(codes.MERGE_COUNT_MISMATCH, "content mismatch: digest differs")


def merge(args: argparse.Namespace, plan: faults.FailurePlan) -> int:
    """Merge, check and publish; return the number of events merged."""
    if plan.fails_config():
        raise MergeRefused(codes.MERGE_BAD_INPUT, "injected bad configuration")
    trees, _, entries = inspect_inputs(args.inputs)
    total = sum(entries)
    say(f"Inputs: {len(trees)} files, {total} events ({', '.join(map(str, entries))})")
    if args.expect_events is not None and total != args.expect_events:
        raise MergeRefused(
            codes.MERGE_COUNT_MISMATCH,
            f"event count mismatch: inputs hold {total} events, expected {args.expect_events}",
        )
    duplicates = count_duplicates(trees)
    if duplicates:
        raise MergeRefused(codes.MERGE_DUPLICATES, f"{duplicates} duplicate (run, event) pairs")
    part = args.out.with_name(args.out.name + ".part")
    try:
        digest_hex = write_merged(args, trees, plan, part)
        verify(part, total, digest_hex)
    except MergeRefused:
        part.unlink(missing_ok=True)
        raise
    try:
        sides = merge_side_outputs(args.inputs, args.out)
    except ValueError as exc:
        part.unlink(missing_ok=True)
        raise MergeRefused(codes.MERGE_COUNT_MISMATCH, f"side outputs: {exc}") from None
    os.replace(part, args.out)
    if sides:
        say(sides)
    say(f"Content digest: {digest_hex}")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    plan = faults.plan_from_args(parser, args, args.seed)
    started = time.monotonic()
    say(f"Begin Job: merge of {len(args.inputs)} files into {args.out}")
    try:
        total = merge(args, plan)
    except MergeRefused as exc:
        say(f"Merge refused: {exc}", err=True)
        return exc.code
    say(
        f"Merged {total} events from {len(args.inputs)} files in {time.monotonic() - started:.1f} s"
    )
    faults.finish(plan, args.out, total)
    return codes.OK


if __name__ == "__main__":
    sys.exit(main())
