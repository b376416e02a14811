"""The reconstruction transformation: cluster jets in generated events, write an mDST.

    python -m prodagent.payload.reconstruct --out MDST.root [--hist HIST.root] [--dump DUMP.txt]
        [--radius 0.4] [--jet-ptmin 5] [--seed S] [--compression zlib1|lz4|zstd|none]
        [--fail-mode M --fail-rate P --fail-code C --fail-after K --fail-salt X --fail-message T]
        -- IN1.root IN2.root ...

Each input is the generator's `events` tree, read in chunks with uproot; the final-state
particles (`Part_pt/eta/phi`, taken as massless) are clustered with FastJet's anti-kt, one
`ClusterSequence` per chunk over the whole awkward array (no per-event Python). Three outputs:

- the mDST (`--out`): an `events` tree with run, event, nJets, sumPt (of the particles),
  HT (of the jets) and the jets' Jet_pt/eta/phi, one entry per input event, in input order;
- the histograms (`--hist`): `hist` histograms of jet pT and jet multiplicity, written to ROOT
  with uproot (merged by addition, `prodagent.payload.histmerge`);
- the event dump (`--dump`): the first events as text, archived, never merged.

The mDST is written as OUT.part and renamed only once its entry count equals the inputs'. It
prints "End of Job: N events" and has the generator's failure knobs (`faults`).

Exit status: 0 ok, 2 bad arguments, 3 unreadable input, 4 reconstruction failed, 5 the written
file does not hold what was read; injected failures exit with --fail-code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from prodagent.payload import codes, faults, rootio
from prodagent.payload.jobspec import MAX_SEED

PARTICLE_BRANCHES = ("Part_pt", "Part_eta", "Part_phi")
DUMP_EVENTS = 5
JET_PT_AXIS = (50, 0.0, 250.0)
NJETS_AXIS = (0, 30)


def say(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prodagent.payload.reconstruct")
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hist", type=Path, default=None)
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--radius", type=float, default=0.4)
    parser.add_argument("--jet-ptmin", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1, help="draws the injected failures")
    parser.add_argument("--compression", choices=tuple(rootio.COMPRESSIONS), default="zlib1")
    parser.add_argument("--step", default="20 MB", help='chunk size: "20 MB" or a number of entries')
    faults.add_arguments(parser)
    return parser


def cluster(columns: dict[str, Any], radius: float, ptmin: float) -> dict[str, Any]:
    """One chunk of generator columns -> the mDST's columns (jets by anti-kt, massless)."""
    import fastjet  # imported here: its banner goes to the log only when jets are made

    n = len(columns["run"])
    if all(b in columns for b in PARTICLE_BRANCHES):
        pt, eta, phi = (columns[b] for b in PARTICLE_BRANCHES)
        particles = ak.zip({"px": pt * np.cos(phi), "py": pt * np.sin(phi),
                            "pz": pt * np.sinh(eta), "E": pt * np.cosh(eta)})
        jets = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, radius))
        found = jets.inclusive_jets(ptmin)
        jet_pt = np.hypot(found["px"], found["py"])
        order = ak.argsort(jet_pt, axis=1, ascending=False)
        found, jet_pt = found[order], jet_pt[order]
        jet_eta = np.arcsinh(found["pz"] / np.maximum(jet_pt, 1e-9))
        jet_phi = np.arctan2(found["py"], found["px"])
        sum_pt = ak.to_numpy(ak.sum(pt, axis=1))
    else:  # generated without particles: no jets to find
        jet_pt = jet_eta = jet_phi = ak.Array([[] for _ in range(n)], with_name=None)
        sum_pt = np.asarray(columns.get("sumPt", np.zeros(n)))
    as_f32 = lambda a: ak.values_astype(a, np.float32)  # noqa: E731
    return {
        "run": ak.to_numpy(columns["run"]).astype(np.uint32),
        "event": ak.to_numpy(columns["event"]).astype(np.uint64),
        "nJets": ak.to_numpy(ak.num(jet_pt, axis=1)).astype(np.int32),
        "sumPt": np.asarray(sum_pt, dtype=np.float32),
        "HT": ak.to_numpy(ak.sum(jet_pt, axis=1)).astype(np.float32),
        "Jet_pt": as_f32(jet_pt), "Jet_eta": as_f32(jet_eta), "Jet_phi": as_f32(jet_phi),
    }


MDST_TYPES: dict[str, Any] = {
    "run": np.uint32, "event": np.uint64, "nJets": np.int32, "sumPt": np.float32, "HT": np.float32,
    "Jet": "var * {pt: float32, eta: float32, phi: float32}",
}


class Histograms:
    """The job's histograms, filled chunk by chunk."""

    def __init__(self) -> None:
        import hist

        self.jet_pt = hist.Hist.new.Regular(*JET_PT_AXIS, name="pt", label="jet pT [GeV]").Double()
        self.n_jets = hist.Hist.new.Integer(*NJETS_AXIS, name="n", label="jets per event").Double()

    def fill(self, columns: dict[str, Any]) -> None:
        self.jet_pt.fill(ak.to_numpy(ak.flatten(columns["Jet_pt"])))
        self.n_jets.fill(columns["nJets"])

    def write(self, path: Path) -> None:
        part = path.with_name(path.name + ".part")
        with uproot.recreate(part) as file:
            file["jet_pt"] = self.jet_pt
            file["n_jets"] = self.n_jets
        os.replace(part, path)


def dump_lines(columns: dict[str, Any], room: int) -> list[str]:
    """Up to `room` events as text: run, event, jets and the leading jet's pT."""
    lines = []
    for i in range(min(room, len(columns["run"]))):
        pts = ak.to_list(columns["Jet_pt"][i])
        lead = f"{pts[0]:.2f}" if pts else "-"
        lines.append(f"run {columns['run'][i]} event {columns['event'][i]} "
                     f"jets {columns['nJets'][i]} leading_pt {lead} HT {columns['HT'][i]:.2f}")
    return lines


def reconstruct(args: argparse.Namespace, plan: faults.FailurePlan, part: Path) -> int:
    """Read every input, cluster, write the mDST into `part`; return the events written."""
    histograms = Histograms() if args.hist else None
    dump: list[str] = []
    done = 0
    with uproot.recreate(part, compression=rootio.COMPRESSIONS[args.compression]) as out:
        tree = out.mktree(rootio.TREE, MDST_TYPES)
        for path in args.inputs:
            source = rootio.open_tree(path)
            present = set(source.keys())
            names = [b for b in ("run", "event", "sumPt", *PARTICLE_BRANCHES) if b in present]
            for chunk in source.iterate(names, step_size=args.step, library="ak"):
                if plan.fails_mid_run() and done >= plan.after:
                    faults.trigger(plan, done)
                columns = cluster({n: chunk[n] for n in names}, args.radius, args.jet_ptmin)
                tree.extend(rootio.to_records(columns))
                if histograms is not None:
                    histograms.fill(columns)
                dump += dump_lines(columns, DUMP_EVENTS - len(dump))
                done += len(columns["run"])
                say(f"Processed {done} events. Run {columns['run'][-1]}, "
                    f"last Event {columns['event'][-1]}, input {path.name}")
        if plan.fails_mid_run():
            faults.trigger(plan, done)
    if histograms is not None:
        histograms.write(args.hist)
    if args.dump:
        args.dump.write_text("\n".join(dump) + "\n")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.seed <= MAX_SEED or args.radius <= 0 or args.jet_ptmin < 0:
        parser.error(f"--seed in 1..{MAX_SEED}, --radius > 0, --jet-ptmin >= 0")
    plan = faults.plan_from_args(parser, args, args.seed)
    out: Path = args.out
    part = out.with_name(out.name + ".part")
    started = time.monotonic()
    say(f"Begin Job: reconstruct {len(args.inputs)} input file(s), anti-kt R={args.radius}, output {out}")
    if plan.fails_config():
        say("Reconstruction configuration refused: injected bad configuration", err=True)
        return codes.GEN_INIT_FAILED
    try:
        expected = sum(rootio.count_entries(p) for p in args.inputs)
    except Exception as exc:  # noqa: BLE001 - any unreadable input refuses the job
        say(f"Input unreadable: {exc.__class__.__name__}: {exc}", err=True)
        return codes.GEN_INIT_FAILED
    try:
        done = reconstruct(args, plan, part)
    except Exception as exc:  # noqa: BLE001 - any failure here is a reconstruction failure
        say(f"Reconstruction failed: {exc.__class__.__name__}: {exc}", err=True)
        return codes.GEN_FAILED
    written = rootio.count_entries(part)
    if written != expected or done != expected:
        say(f"Output check failed: {part} holds {written} entries, inputs {expected}", err=True)
        return codes.GEN_ENTRY_MISMATCH
    os.replace(part, out)
    elapsed = time.monotonic() - started
    say(f"Reconstructed {done} events in {elapsed:.2f} s ({done / max(elapsed, 1e-9):.0f} events/s)")
    faults.finish(plan, out, done)
    return codes.OK


if __name__ == "__main__":
    sys.exit(main())
