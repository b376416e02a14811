"""Workflow specification: the document a requester submits, as pydantic models.

Two kinds of workflow share the output, merge, retry, resource, priority and site sections:

- `kind: montecarlo`: generate `events.total` events with a payload, `events.per_job` per job;
- `kind: processing`: run a payload over a list of existing input files, `files_per_job` per job.

Every model forbids unknown keys and validates strictly (a quoted number is a wrong type, not a
number), so a typo is refused instead of silently taking a default. `prodrequest.loader` turns a
document into one of these models, or into a list of errors that each name the field path.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MAX_JOBS = 100_000  # allocations per request: each job is one allocation row
MAX_TOTAL_EVENTS = 10_000_000_000
SEED_MAX = 900_000_000  # Pythia's Random:seed accepts 0..900,000,000
RUN_LUMI_STRIDE = 100_000  # run_lumi seeds: run_number * stride + job index + 1

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,99}$"
PARAM_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
SITE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
LFN_PATTERN = r"^[A-Za-z0-9_./:+=@-]{1,500}$"
TIER_PATTERN = r"^[A-Z][A-Z0-9-]{1,19}$"
DATASET_PATTERN = (
    r"^/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Z][A-Z0-9-]{1,19}$"
)

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
SiteName = Annotated[str, Field(pattern=SITE_PATTERN)]
Lfn = Annotated[str, Field(pattern=LFN_PATTERN)]

_SCALARS = (str, int, float, bool)


class Section(BaseModel):
    """Base of every section: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Payload(Section):
    """What each job runs: a registered transformation (e.g. `pythia`) or a command line."""

    transformation: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]{1,39}$")
    command: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(
        None, min_length=1, max_length=100
    )
    version: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.+-]+$")
    parameters: dict[Annotated[str, Field(pattern=PARAM_KEY_PATTERN)], Any] = Field(
        default_factory=dict, max_length=200
    )

    @field_validator("parameters")
    @classmethod
    def _flat_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [key for key, item in value.items() if not _is_parameter_value(item)]
        if bad:
            raise ValueError(
                f"values of {', '.join(repr(k) for k in bad)} must be a string, number or boolean, "
                "or a list or flat mapping of those"
            )
        return value

    @model_validator(mode="after")
    def _one_entry_point(self) -> Payload:
        if (self.transformation is None) == (self.command is None):
            raise ValueError("give exactly one of 'transformation' or 'command'")
        return self


def _is_parameter_value(item: Any) -> bool:
    if isinstance(item, _SCALARS):
        return not (isinstance(item, float) and not math.isfinite(item))
    if isinstance(item, list):
        return len(item) <= 1000 and all(isinstance(x, _SCALARS) for x in item)
    if isinstance(item, dict):
        return len(item) <= 100 and all(
            isinstance(k, str) and isinstance(v, _SCALARS) for k, v in item.items()
        )
    return False


class EventSplit(Section):
    """Monte Carlo size: total events and events per job (one job per allocation)."""

    total: int = Field(ge=1, le=MAX_TOTAL_EVENTS)
    per_job: int = Field(ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _not_too_many_jobs(self) -> EventSplit:
        jobs = math.ceil(self.total / self.per_job)
        if jobs > MAX_JOBS:
            raise ValueError(
                f"total/per_job gives {jobs} jobs, more than the limit of {MAX_JOBS}; "
                "raise per_job or split the request"
            )
        return self

    @property
    def jobs(self) -> int:
        return math.ceil(self.total / self.per_job)


class SeedPolicy(Section):
    """How each job's random seed is chosen; both policies are reproducible and unique per job.

    - `sequential`: seed = base + job index;
    - `run_lumi`: seed = run_number * 100000 + job index + 1 (HEP style: run and lumi section).
    """

    policy: Literal["sequential", "run_lumi"] = "sequential"
    base: int = Field(1, ge=1, le=SEED_MAX)


class Output(Section):
    """Where the output goes: dataset `/Primary/Processed/TIER` and its data tier."""

    dataset: str = Field(pattern=DATASET_PATTERN)
    tier: str = Field(pattern=TIER_PATTERN)

    @model_validator(mode="after")
    def _tier_matches(self) -> Output:
        last = self.dataset.rsplit("/", 1)[-1]
        if last != self.tier:
            raise ValueError(f"dataset ends with tier '{last}' but tier is '{self.tier}'")
        return self


class MergeSettings(Section):
    """How unmerged job outputs are grouped into merged files (WMAgent's defaults)."""

    enabled: bool = True
    min_size_bytes: int = Field(2 * GiB, ge=0, le=TiB)
    max_size_bytes: int = Field(4 * GiB, ge=KiB, le=TiB)
    max_events: int = Field(100_000_000, ge=1, le=MAX_TOTAL_EVENTS)
    max_wait_s: int = Field(86_400, ge=0, le=30 * 86_400)

    @model_validator(mode="after")
    def _min_below_max(self) -> MergeSettings:
        if self.min_size_bytes > self.max_size_bytes:
            raise ValueError(
                f"min_size_bytes ({self.min_size_bytes}) is larger than "
                f"max_size_bytes ({self.max_size_bytes})"
            )
        return self


class RetryPolicy(Section):
    """Retries of a failed job: how many, and the cool-off before each (base_s * f(retry))."""

    max_retries: int = Field(3, ge=0, le=20)
    cooloff: Literal["linear", "squared", "exponential"] = "squared"
    base_s: float = Field(60.0, ge=0, le=86_400)


class Resources(Section):
    """What one job asks of the batch system."""

    memory_mb: int = Field(2000, ge=100, le=256_000)
    time_s: int = Field(3600, ge=10, le=7 * 86_400)


class Sites(Section):
    """Which agents' sites may run the work: empty whitelist means any site."""

    whitelist: list[SiteName] = Field(default_factory=list, max_length=500)
    blacklist: list[SiteName] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _disjoint(self) -> Sites:
        both = sorted(set(self.whitelist) & set(self.blacklist))
        if both:
            raise ValueError(f"sites both white- and blacklisted: {', '.join(both)}")
        return self

    def admits(self, agent_sites: list[str]) -> bool:
        """True when an agent serving `agent_sites` may run this work."""
        usable = [s for s in agent_sites if s not in self.blacklist]
        if not self.whitelist:
            return bool(usable) or not agent_sites
        return any(s in self.whitelist for s in usable)


class InputFile(Section):
    """One input file of a processing workflow; a bare string is taken as its LFN."""

    lfn: Lfn
    events: int | None = Field(None, ge=0, le=10**9)
    size: int | None = Field(None, ge=0, le=TiB)


def _lfn_to_file(value: Any) -> Any:
    return {"lfn": value} if isinstance(value, str) else value


class InputSpec(Section):
    """The input files and how many go into one job."""

    files: list[Annotated[InputFile, BeforeValidator(_lfn_to_file)]] = Field(
        min_length=1, max_length=MAX_JOBS
    )
    files_per_job: int = Field(1, ge=1, le=10_000)

    @model_validator(mode="after")
    def _unique_lfns(self) -> InputSpec:
        seen: set[str] = set()
        dupes = sorted({f.lfn for f in self.files if f.lfn in seen or seen.add(f.lfn)})
        if dupes:
            raise ValueError(f"duplicate input files: {', '.join(dupes[:5])}")
        return self

    @property
    def jobs(self) -> int:
        return math.ceil(len(self.files) / self.files_per_job)


class _Common(Section):
    name: Name
    description: str = Field("", max_length=2000)
    payload: Payload
    output: Output
    merge: MergeSettings = Field(default_factory=MergeSettings)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    resources: Resources = Field(default_factory=Resources)
    priority: int = Field(1000, ge=0, le=1_000_000)
    sites: Sites = Field(default_factory=Sites)


class MonteCarloWorkflow(_Common):
    """Generate events from nothing: split by events per job."""

    kind: Literal["montecarlo"]
    events: EventSplit
    seeds: SeedPolicy = Field(default_factory=SeedPolicy)
    run_number: int | None = Field(None, ge=1, le=999_999)

    @model_validator(mode="after")
    def _seeds_fit(self) -> MonteCarloWorkflow:
        jobs = self.events.jobs
        if self.seeds.policy == "sequential" and self.seeds.base + jobs > SEED_MAX:
            raise ValueError(
                f"seeds.base + {jobs} jobs exceeds the largest seed {SEED_MAX}; lower seeds.base"
            )
        if self.seeds.policy == "run_lumi":
            if jobs >= RUN_LUMI_STRIDE:
                raise ValueError(f"seeds.policy run_lumi allows fewer than {RUN_LUMI_STRIDE} jobs")
            if self.run_number is not None and self.run_number * RUN_LUMI_STRIDE + jobs > SEED_MAX:
                raise ValueError("run_number too large for seeds.policy run_lumi")
        return self

    @property
    def jobs(self) -> int:
        return self.events.jobs

    @property
    def total_events(self) -> int:
        return self.events.total


class ProcessingWorkflow(_Common):
    """Process existing files: split by files per job."""

    kind: Literal["processing"]
    input: InputSpec

    @property
    def jobs(self) -> int:
        return self.input.jobs

    @property
    def total_events(self) -> int:
        """Declared input events (0 when the file list does not give them)."""
        return sum(f.events or 0 for f in self.input.files)


Workflow = Annotated[MonteCarloWorkflow | ProcessingWorkflow, Field(discriminator="kind")]
KINDS: dict[str, type[MonteCarloWorkflow] | type[ProcessingWorkflow]] = {
    "montecarlo": MonteCarloWorkflow,
    "processing": ProcessingWorkflow,
}
workflow_adapter: TypeAdapter[MonteCarloWorkflow | ProcessingWorkflow] = TypeAdapter(Workflow)


def job_seed(spec: MonteCarloWorkflow, run_number: int, index: int) -> int:
    """The seed of job `index` (0-based): the same inputs always give the same seed."""
    if spec.seeds.policy == "run_lumi":
        return run_number * RUN_LUMI_STRIDE + index + 1
    return spec.seeds.base + index
