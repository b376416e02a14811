"""Failure injection for the transformations: fail in the ways real jobs fail, on purpose.

Whether a job fails is a pure function of (seed, salt, rate), so a test or a demo knows in
advance which jobs fail; passing the retry number as the salt makes a failure transient.
Knobs come from `--fail-*` arguments, or from `PAYLOAD_FAIL_*` environment variables when an
argument is not given.

Modes:
  mid-run (after `--fail-after` events): exit, fatal, memory, segv, hang
  at configuration time:                  badconfig (the transformation makes its setup fail)
  after a successful run:                  nooutput, empty, noendofjob
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import hashlib
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from prodagent.payload.codes import DEFAULT_FAIL_CODE

MID_RUN_MODES = ("exit", "fatal", "memory", "segv", "hang")
CONFIG_MODES = ("badconfig",)
AFTER_SUCCESS_MODES = ("nooutput", "empty", "noendofjob")
MODES = MID_RUN_MODES + CONFIG_MODES + AFTER_SUCCESS_MODES

END_OF_JOB = "End of Job: {n} events"
FATAL_LINE = "A FATAL ERROR APPEARED"

_ENV = "PAYLOAD_FAIL_"
_MEMORY_ASK = 8 << 30  # far above the lowered address-space limit, so the allocation fails
_MEMORY_HEADROOM = 256 << 20


@dataclass(frozen=True)
class FailurePlan:
    """What this run will do wrong; `mode` None means nothing."""

    mode: str | None = None
    code: int = DEFAULT_FAIL_CODE
    after: int = 0
    message: str | None = None

    def fails_mid_run(self) -> bool:
        return self.mode in MID_RUN_MODES

    def fails_config(self) -> bool:
        return self.mode in CONFIG_MODES


def draw(seed: int, salt: str, rate: float) -> bool:
    """True when this (seed, salt) is among the `rate` fraction that fails."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(f"prodagent-fail|{seed}|{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--fail-*` options; each defaults to its `PAYLOAD_FAIL_*` environment variable."""
    group = parser.add_argument_group("failure injection (or PAYLOAD_FAIL_* env vars)")
    group.add_argument("--fail-mode", choices=MODES, default=_env("MODE"))
    group.add_argument("--fail-rate", type=float, default=_env("RATE"))
    group.add_argument("--fail-code", type=int, default=_env("CODE"))
    group.add_argument("--fail-after", type=int, default=_env("AFTER"))
    group.add_argument("--fail-salt", default=_env("SALT"))
    group.add_argument("--fail-message", default=_env("MESSAGE"))


def plan_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, seed: int
) -> FailurePlan:
    """Validate the knobs (bad ones exit 2 through the parser) and draw for this seed."""
    mode = args.fail_mode or None
    if mode is None:
        return FailurePlan()
    try:
        rate = float(args.fail_rate) if args.fail_rate is not None else 1.0
        code = int(args.fail_code) if args.fail_code is not None else DEFAULT_FAIL_CODE
        after = int(args.fail_after) if args.fail_after is not None else 0
    except ValueError as exc:
        parser.error(f"bad failure knob: {exc}")
    if mode not in MODES:
        parser.error(f"unknown failure mode {mode!r}; choose from {', '.join(MODES)}")
    if not 0.0 <= rate <= 1.0 or not 1 <= code <= 255 or after < 0:
        parser.error("failure knobs: rate in [0, 1], code in [1, 255], after >= 0")
    if not draw(seed, args.fail_salt or "", rate):
        return FailurePlan()
    return FailurePlan(mode=mode, code=code, after=after, message=args.fail_message)


def trigger(plan: FailurePlan, processed: int) -> NoReturn:
    """Fail now, the way `plan.mode` says. Never returns."""
    sys.stdout.flush()
    where = f"after {processed} events"
    if plan.mode == "memory":
        _exhaust_memory(plan.code)
    if plan.mode == "segv":
        print(f"Injected segmentation fault {where}", file=sys.stderr, flush=True)
        faulthandler.enable()
        ctypes.string_at(0)
    if plan.mode == "hang":
        print(f"Injected hang {where}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    print(f"%MSG-e PayloadFailure: injected failure ({plan.mode}) {where}", file=sys.stderr)
    if plan.mode == "fatal":
        print("----- Begin Fatal Exception -----", file=sys.stderr)
        print("An exception of category 'PayloadFailure' occurred", file=sys.stderr)
        print("----- End Fatal Exception -----", file=sys.stderr)
        print(FATAL_LINE, file=sys.stderr)
    if plan.message:
        print(plan.message, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(plan.code)


def finish(plan: FailurePlan, output: Path, events: int) -> None:
    """The last step of a successful run: spoil the result if asked, then say End of Job."""
    if plan.mode == "nooutput":
        output.unlink(missing_ok=True)
    elif plan.mode == "empty":
        output.write_bytes(b"")
    if plan.mode != "noendofjob":
        print(END_OF_JOB.format(n=events), flush=True)


def _exhaust_memory(code: int) -> NoReturn:
    """A genuine MemoryError: cap the address space just above what is in use, then ask for
    more than the cap (without the cap, overcommit would let the allocation succeed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + _MEMORY_HEADROOM
    if soft != resource.RLIM_INFINITY:
        cap = min(cap, soft)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        bytearray(_MEMORY_ASK)
    except MemoryError:
        traceback.print_exc()
        print(f"Cannot Allocate {_MEMORY_ASK} Bytes", file=sys.stderr, flush=True)
        raise SystemExit(code) from None
    raise SystemExit(code)  # allocation somehow succeeded; still fail as asked


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 1 << 30


def _env(name: str) -> str | None:
    return os.environ.get(_ENV + name) or None
