"""The job spec: the JSON file (`job.json`) the agent writes into each job's work directory.

The job wrapper (`runjob`) reads it and nothing else, so everything a job needs to run is here.
Unknown keys are refused, and each transformation's `params` are checked when the spec is built,
so a bad spec fails in the agent, not on a worker node. The parameter models here are also the
ones the request service validates `payload.parameters` with (`prodrequest.spec`): what the
service accepts is what the agent can build.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prodagent.payload.faults import MODES
from prodagent.payload.files import atomic_write_text
from prodagent.storage.transfer import StageOutSpec

SPEC_NAME = "job.json"

#: Pythia accepts 1..900,000,000; 0 would mean a time-based (irreproducible) seed
MAX_SEED = 900_000_000

FailMode = Literal[
    "exit", "fatal", "memory", "nooutput", "empty", "noendofjob", "segv", "hang", "badconfig"
]
if set(get_args(FailMode)) != set(MODES):  # one vocabulary: the modes faults.py implements
    raise ImportError(f"FailMode {get_args(FailMode)} differs from faults.MODES {MODES}")

#: free text handed to a child as an argument or environment variable: no control characters
_PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PythiaParams(_Strict):
    """`params` of a "pythia" job."""

    process: Literal["hardqcd", "minbias"] = "minbias"
    ecm: float = Field(13000.0, gt=0, allow_inf_nan=False)
    pthatmin: float = Field(20.0, ge=0, allow_inf_nan=False)
    chunk: int = Field(200, ge=1, le=2000)
    particles: bool = True  # False: per-event summaries only, ~16 bytes per event


class ReconstructParams(_Strict):
    """`params` of a "reconstruct" job: anti-kt jets of radius `radius` above `jet_ptmin` GeV."""

    radius: float = Field(0.4, gt=0, le=2.0, allow_inf_nan=False)
    jet_ptmin: float = Field(5.0, ge=0, allow_inf_nan=False)


class MergeParams(_Strict):
    """`params` of a "merge" job."""

    compression: Literal["zlib1", "lz4", "zstd", "none"] = "zlib1"
    drop_events: int = Field(0, ge=0)  # test knob: the merge loses this many events


class CommandParams(_Strict):
    """`params` of a "command" job: an arbitrary argv, run in the job directory."""

    argv: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


PARAMS_MODELS: dict[str, type[_Strict]] = {
    "pythia": PythiaParams,
    "reconstruct": ReconstructParams,
    "merge": MergeParams,
    "command": CommandParams,
}


class FailSpec(_Strict):
    """Failure injection: fail with `mode` when hash(seed, salt) falls below `rate`.

    `salt` None means "the retry number", so a retried job draws again and may succeed.
    """

    mode: FailMode
    rate: float = Field(1.0, ge=0.0, le=1.0)
    code: int | None = Field(None, ge=1, le=255)
    after: int = Field(0, ge=0)  # events processed before failing (mid-run modes)
    salt: str | None = Field(None, max_length=200, pattern=_PLAIN_TEXT)
    message: str | None = Field(None, max_length=1000, pattern=_PLAIN_TEXT)


class StepSpec(_Strict):
    """A further step of a multi-step job (StepChain): it reads the output of step `input`
    ("main": the job's own transformation) from the job's work area."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    transformation: Literal["reconstruct"]
    params: dict[str, Any] = Field(default_factory=dict)
    input: str = "main"
    fail: FailSpec | None = None


class KeepSpec(_Strict):
    """A StepChain step whose output is kept beside the job's: copied to `path` once the job
    succeeded, and registered in `dataset`."""

    step: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    dataset: str = Field(min_length=1)
    path: str = Field(min_length=1)


class JobSpec(_Strict):
    """One job, as the agent hands it to the wrapper."""

    job_id: str = Field(min_length=1)
    job_type: Literal["production", "merge"]
    transformation: Literal["pythia", "reconstruct", "merge", "command"]
    params: dict[str, Any] = Field(default_factory=dict)
    events: int | None = Field(None, ge=0)
    first_event: int = Field(1, ge=0)
    run: int = Field(1, ge=0, le=2**32 - 1)
    seed: int = Field(1, ge=1, le=MAX_SEED)
    retry: int = Field(0, ge=0)
    inputs: list[str] = Field(default_factory=list)
    input_events: list[int] | None = None
    output_path: str | None = None
    fail: FailSpec | None = None
    memory_mb: int | None = Field(None, ge=1)  # resident-memory limit the wrapper enforces
    time_limit_s: float | None = Field(None, gt=0)  # wall-time limit the wrapper enforces
    stageout: StageOutSpec | None = None  # copy the output to a storage element at the end
    steps: list[StepSpec] = Field(default_factory=list)  # run after the main one, in order
    keep: list[KeepSpec] = Field(default_factory=list)  # intermediate step outputs to keep

    @model_validator(mode="after")
    def _check_transformation(self) -> JobSpec:
        PARAMS_MODELS[self.transformation].model_validate(self.params)
        if self.transformation == "pythia":
            if not self.events:
                raise ValueError("a pythia job needs events >= 1")
            if not self.output_path:
                raise ValueError("a pythia job needs output_path")
        if self.transformation in ("merge", "reconstruct"):
            if not self.inputs:
                raise ValueError(f"a {self.transformation} job needs inputs")
            if not self.output_path:
                raise ValueError(f"a {self.transformation} job needs output_path")
        if self.output_path is not None and self.output_path in self.inputs:
            raise ValueError("output_path must not be one of the inputs")
        if self.input_events is not None and len(self.input_events) != len(self.inputs):
            raise ValueError("input_events must have one count per input")
        return self

    def typed_params(self) -> PythiaParams | ReconstructParams | MergeParams | CommandParams:
        """`params` parsed with the transformation's own model (defaults filled in)."""
        return PARAMS_MODELS[self.transformation].model_validate(self.params)  # type: ignore[return-value]

    def expected_events(self) -> int | None:
        """How many entries the output must hold, when that is known."""
        if self.transformation in ("merge", "reconstruct"):
            return sum(self.input_events) if self.input_events is not None else None
        return self.events

    def fail_salt(self) -> str:
        """The salt of the failure draw: the spec's own, or the retry number."""
        if self.fail is not None and self.fail.salt is not None:
            return self.fail.salt
        return str(self.retry)


def write_spec(path: str | os.PathLike[str], spec: JobSpec) -> Path:
    """Write `spec` as JSON atomically (temporary file + rename); `path` may be a directory."""
    target = Path(path)
    if target.is_dir():
        target = target / SPEC_NAME
    atomic_write_text(target, spec.model_dump_json(indent=2, exclude_none=True) + "\n")
    return target


def read_spec(path: str | os.PathLike[str]) -> JobSpec:
    """Read and validate a spec; `path` may be the job directory. Raises ValueError or OSError."""
    source = Path(path)
    if source.is_dir():
        source = source / SPEC_NAME
    return JobSpec.model_validate(json.loads(source.read_text()))
