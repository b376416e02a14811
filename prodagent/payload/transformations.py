"""Turns a job spec into the command line and environment of its transformation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import prodagent
from prodagent.payload.jobspec import (
    CommandParams,
    JobSpec,
    MergeParams,
    PythiaParams,
    ReconstructParams,
)
from prodagent.payload.side_outputs import side_outputs

#: the directory holding the `prodagent` package, so that `-m prodagent...` works from any cwd
_PACKAGE_ROOT = str(Path(prodagent.__file__).resolve().parent.parent)


def build_argv(spec: JobSpec) -> list[str]:
    """The child's argv; it runs with the job directory as its working directory."""
    params = spec.typed_params()
    if isinstance(params, CommandParams):
        return list(params.argv)
    assert spec.output_path is not None  # the spec validator guarantees it
    if isinstance(params, PythiaParams):
        argv = [
            *_module("generate"),
            *("--events", str(spec.events), "--seed", str(spec.seed)),
            *("--run", str(spec.run), "--first-event", str(spec.first_event)),
            *("--out", spec.output_path, "--process", params.process),
            *("--ecm", repr(params.ecm), "--pthatmin", repr(params.pthatmin)),
            *("--chunk", str(params.chunk)),
        ]
        if not params.particles:
            argv.append("--no-particles")
        return argv + _fail_args(spec)
    if isinstance(params, ReconstructParams):
        out = Path(spec.output_path)
        hist, dump = side_outputs(out)
        argv = [
            *_module("reconstruct"),
            *("--out", spec.output_path, "--seed", str(spec.seed)),
            *("--hist", str(hist), "--dump", str(dump)),
            *("--radius", repr(params.radius), "--jet-ptmin", repr(params.jet_ptmin)),
        ]
        return argv + _fail_args(spec) + ["--", *spec.inputs]
    assert isinstance(params, MergeParams)
    argv = [
        *_module("merge"),
        *("--out", spec.output_path, "--seed", str(spec.seed)),
        *("--compression", params.compression),
    ]
    expected = spec.expected_events()
    if expected is not None:
        argv += ["--expect-events", str(expected)]
    if params.drop_events:
        argv += ["--drop-events", str(params.drop_events)]
    return argv + _fail_args(spec) + ["--", *spec.inputs]


def child_env(spec: JobSpec, jobdir: Path) -> dict[str, str]:
    """The wrapper's environment, plus what the child needs. A command job gets the spec's
    failure knobs as PAYLOAD_FAIL_* variables, which generate and merge also read."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # keeps Python's lines in order with C++ output in the log
    env["PRODAGENT_JOB_ID"] = spec.job_id
    env["PRODAGENT_JOB_DIR"] = str(jobdir)
    if spec.transformation == "command" and spec.fail is not None:
        env |= {f"PAYLOAD_FAIL_{k.upper()}": v for k, v in _fail_values(spec).items()}
    return env


def _module(name: str) -> list[str]:
    return [sys.executable, "-m", f"prodagent.payload.{name}"]


def _fail_values(spec: JobSpec) -> dict[str, str]:
    fail = spec.fail
    if fail is None:
        return {}
    values = {
        "mode": fail.mode,
        "rate": repr(fail.rate),
        "after": str(fail.after),
        "salt": spec.fail_salt(),
    }
    if fail.code is not None:
        values["code"] = str(fail.code)
    if fail.message:
        values["message"] = fail.message
    return values


def _fail_args(spec: JobSpec) -> list[str]:
    # "--opt=value" so that a value starting with "-" is not read as an option
    return [f"--fail-{k}={v}" for k, v in _fail_values(spec).items()]
