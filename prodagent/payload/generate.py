"""The production transformation: generate pp events with Pythia 8 into a ROOT file.

    python -m prodagent.payload.generate --events N --seed S --out FILE.root
        [--process hardqcd|minbias] [--ecm 13000] [--pthatmin 20] [--run R] [--first-event E]
        [--chunk 200] [--no-particles] [--compression zlib1|lz4|zstd|none]
        [--fail-mode M --fail-rate P --fail-code C --fail-after K --fail-salt X --fail-message T]

Events come from `Pythia.nextBatch` as awkward arrays and are summarised with numpy, with no
per-particle Python code. The output is a TTree `events` (run, event, nFinal, nCharged, sumPt,
pTHat, weight and the final-state particles' Part_pt/eta/phi/pid) plus a JSON `provenance`
string. The file is written as FILE.root.part and renamed only after its entry count and
content digest have been re-read and checked, so a failed job never leaves a FILE.root.

Exit status: 0 ok, 2 bad arguments, 3 Pythia init failed, 4 generation failed, 5 the written
file does not hold what was generated; injected failures exit with --fail-code.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pythia8mc
import uproot

from prodagent.payload import codes, faults, rootio
from prodagent.payload.jobspec import MAX_SEED

#: nextBatch skips events Pythia fails to make, giving up after this many attempts per event
_BATCH_ERROR_MODE = 10.0
_LIBC = ctypes.CDLL(None)


def say(message: str, err: bool = False) -> None:
    """Print in order with Pythia's C++ output, which goes through C stdio, not Python."""
    _LIBC.fflush(None)
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prodagent.payload.generate")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True, help=f"1..{MAX_SEED}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--process", choices=("hardqcd", "minbias"), default="minbias")
    parser.add_argument("--ecm", type=float, default=13000.0)
    parser.add_argument("--pthatmin", type=float, default=20.0)
    parser.add_argument("--run", type=int, default=1)
    parser.add_argument("--first-event", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=200, help="events per nextBatch call")
    parser.add_argument("--no-particles", dest="particles", action="store_false")
    parser.add_argument("--compression", choices=("zlib1", "lz4", "zstd", "none"), default="zlib1")
    faults.add_arguments(parser)
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.events < 0:
        parser.error("--events must be >= 0")
    if not 1 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be in 1..{MAX_SEED} (0 would be a time-based seed)")
    if not 0 <= args.run < 2**32:
        parser.error("--run must fit in 32 bits")
    if args.first_event < 0:
        parser.error("--first-event must be >= 0")
    if not 1 <= args.chunk <= 2000:
        parser.error("--chunk must be in 1..2000 (memory grows ~0.3 MB per HardQCD event)")
    if args.ecm <= 0 or args.pthatmin < 0:
        parser.error("--ecm must be > 0 and --pthatmin >= 0")


def pythia_settings(args: argparse.Namespace, plan: faults.FailurePlan) -> list[str]:
    settings = [
        f"Beams:eCM = {args.ecm}",
        "Random:setSeed = on",
        f"Random:seed = {args.seed}",
        "Next:numberCount = 0",
        "Next:numberShowInfo = 0",
        "Next:numberShowProcess = 0",
        "Next:numberShowEvent = 0",
        "Init:showChangedParticleData = off",
    ]
    if args.process == "hardqcd":
        settings += ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {args.pthatmin}"]
    else:
        settings += ["SoftQCD:nonDiffractive = on"]
    if plan.fails_config():
        settings.append("Beams:eCM = 1.")  # a genuine init failure: too low energy
    return settings


class EventSummariser:
    """Turns one nextBatch result into the tree's columns, vectorised."""

    def __init__(self, pythia: Any, particles: bool) -> None:
        self._particle_data = pythia.particleData
        self._charges: dict[int, float] = {}
        self._particles = particles

    def columns(self, batch: Any, run: int, first_event: int) -> dict[str, Any]:
        prt = batch["prt"]
        final = prt[prt["status"] > 0]
        counts = ak.to_numpy(ak.num(final, axis=1)).astype(np.int64)
        n = len(counts)
        momentum = final["p"]
        px, py, pz = (ak.to_numpy(ak.flatten(momentum[c])) for c in ("px", "py", "pz"))
        pid = ak.to_numpy(ak.flatten(final["id"])).astype(np.int32)
        pt = np.hypot(px, py)
        eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
        phi = np.arctan2(py, px)
        owner = np.repeat(np.arange(n), counts)
        charged = self._charge_of(pid) != 0
        info = batch["info"]
        weight = ak.fill_none(ak.firsts(info["weights"]), 1.0)
        columns: dict[str, Any] = {
            "run": np.full(n, run, dtype=np.uint32),
            "event": np.arange(first_event, first_event + n, dtype=np.uint64),
            "nFinal": counts.astype(np.int32),
            "nCharged": np.bincount(owner[charged], minlength=n).astype(np.int32),
            "sumPt": np.bincount(owner, weights=pt, minlength=n).astype(np.float32),
            "pTHat": np.sqrt(ak.to_numpy(info["pT2Hat"])).astype(np.float32),
            "weight": ak.to_numpy(weight).astype(np.float64),
        }
        if self._particles:
            for name, values in (("pt", pt), ("eta", eta), ("phi", phi)):
                columns[f"Part_{name}"] = ak.unflatten(values.astype(np.float32), counts)
            columns["Part_pid"] = ak.unflatten(pid, counts)
        return columns

    def _charge_of(self, pid: Any) -> Any:
        species, index = np.unique(pid, return_inverse=True)
        # a loop over particle species (tens per chunk), not over particles
        for code in species.tolist():
            if code not in self._charges:
                self._charges[code] = float(self._particle_data.charge(code))
        return np.array([self._charges[c] for c in species.tolist()])[index]


def tree_types(particles: bool) -> dict[str, Any]:
    types: dict[str, Any] = {
        "run": np.uint32,
        "event": np.uint64,
        "nFinal": np.int32,
        "nCharged": np.int32,
        "sumPt": np.float32,
        "pTHat": np.float32,
        "weight": np.float64,
    }
    if particles:
        types["Part"] = "var * {pt: float32, eta: float32, phi: float32, pid: int32}"
    return types


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    plan = faults.plan_from_args(parser, args, args.seed)
    faulthandler.enable()
    out: Path = args.out
    part = out.with_name(out.name + ".part")
    say(
        f"Begin Job: {args.events} {args.process} events at {args.ecm:g} GeV, seed {args.seed}, "
        f"run {args.run}, first event {args.first_event}, output {out}"
    )
    started = time.monotonic()

    settings = pythia_settings(args, plan)
    try:
        pythia = pythia8mc.Pythia("", False)
        ready = all(pythia.readString(s) for s in settings) and pythia.init()
    except Exception as exc:  # noqa: BLE001 - e.g. a data path that does not exist
        say(f"PYTHIA init failed: {exc.__class__.__name__}: {exc}", err=True)
        return codes.GEN_INIT_FAILED
    if not ready:
        say("PYTHIA init failed: see the messages above", err=True)
        return codes.GEN_INIT_FAILED
    say(f"Pythia initialised in {time.monotonic() - started:.1f} s")

    try:
        digest_hex = generate(pythia, args, plan, part, settings, started)
    except Exception as exc:  # noqa: BLE001 - any failure here is a generation failure
        say(f"Generation failed: {exc.__class__.__name__}: {exc}", err=True)
        return codes.GEN_FAILED

    entries = rootio.count_entries(part)
    if entries != args.events or rootio.content_digest(part) != digest_hex:
        say(
            f"Output check failed: {part} holds {entries} entries (expected {args.events}) "
            "or not the content generated",
            err=True,
        )
        return codes.GEN_ENTRY_MISMATCH
    os.replace(part, out)
    elapsed = time.monotonic() - started
    say(f"sigmaGen {pythia.infoPython().sigmaGen():.4g} mb, elapsed {elapsed:.1f} s")
    say(f"Content digest: {digest_hex}")
    faults.finish(plan, out, args.events)
    return codes.OK


def generate(
    pythia: Any,
    args: argparse.Namespace,
    plan: faults.FailurePlan,
    part: Path,
    settings: list[str],
    started: float,
) -> str:
    """Generate and write all events into `part`; return the content digest."""
    summariser = EventSummariser(pythia, args.particles)
    digest = rootio.ContentDigest()
    done = 0
    with uproot.recreate(part, compression=rootio.COMPRESSIONS[args.compression]) as file:
        tree = file.mktree(rootio.TREE, tree_types(args.particles))
        while True:
            if plan.fails_mid_run() and done >= plan.after:
                faults.trigger(plan, done)
            if done >= args.events:
                break
            n = min(args.chunk, args.events - done)
            if plan.fails_mid_run():
                n = min(n, plan.after - done)
            batch = pythia.nextBatch(n, _BATCH_ERROR_MODE)
            if len(batch) != n:
                raise RuntimeError(f"nextBatch returned {len(batch)} events, asked for {n}")
            columns = summariser.columns(batch, args.run, args.first_event + done)
            digest.update(columns)
            tree.extend(rootio.to_records(columns))
            done += n
            last = args.first_event + done - 1
            say(
                f"Processed {done}/{args.events} events. Run {args.run}, last Event {last}, "
                f"elapsed {time.monotonic() - started:.1f} s"
            )
        file[rootio.PROVENANCE] = json.dumps(
            {
                "generator": f"Pythia {pythia.parm('Pythia:versionNumber'):.3f}",
                "settings": settings,
                "seed": args.seed,
                "run": args.run,
                "first_event": args.first_event,
                "events": args.events,
                "process": args.process,
                "sigma_gen_mb": pythia.infoPython().sigmaGen(),
                "content_digest": digest.hexdigest(),
                "uproot": uproot.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            sort_keys=True,
        )
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
