"""Workflow specification: the document a requester submits, as pydantic models.

Two kinds of workflow share the output, merge, retry, resource, priority and site sections:

- `kind: montecarlo`: generate `events.total` events with a payload, `events.per_job` per job;
- `kind: processing`: run a payload over a list of existing input files, split by files per
  job, by run, or by events per job (run and chunk of a file may come from its name).

Every model forbids unknown keys and validates strictly (a quoted number is a wrong type, not a
number), so a typo is refused instead of silently taking a default. `prodrequest.loader` turns a
document into one of these models, or into a list of errors that each name the field path.

Accepted means runnable: the agent builds its jobs from these same models (`prodagent.jobs.specs`
validates the allocation's workflow with `workflow_adapter`). `payload.parameters` is checked by
the transformation's own parameter model (`TRANSFORMATIONS`, the models of the agent's job spec)
plus the reserved test knobs (`TestKnobs`); a `command` payload takes the knobs only. Agents
get a processing workflow without its file list (each allocation carries its own files): they
validate it under the context `AGENT_VIEW`, which lets `input.files` be empty.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from prodagent.payload.jobspec import FailMode, FailSpec, PythiaParams, ReconstructParams
from prodagent.storage.names import check_input_name

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

MAX_JOBS = 1_000_000  # jobs per request
#: allocation rows per request: a Monte Carlo request of more jobs puts several in each allocation
MAX_ALLOCATIONS = 100_000
MAX_TOTAL_EVENTS = 10_000_000_000
MAX_PER_JOB = 10_000_000
AUTO_CHUNK_JOBS = 4  # per_job auto: guessed job lengths per allocation (jobs are cut from it)
SEED_MAX = 900_000_000  # Pythia's Random:seed accepts 0..900,000,000
RUN_LUMI_STRIDE = 100_000  # run_lumi seeds: run_number * stride + job index + 1

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,99}$"
PARAM_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
SITE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
GROUP_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
LFN_PATTERN = r"^[A-Za-z0-9_./:+=@-]{1,500}$"
TIER_PATTERN = r"^[A-Z][A-Z0-9-]{1,19}$"
DATASET_PATTERN = (
    r"^/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Z][A-Z0-9-]{1,19}$"
)

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
SiteName = Annotated[str, Field(pattern=SITE_PATTERN)]
#: an input file: a logical file name that cannot escape a storage element's root, or a URL
#: without `.`/`..` components (`prodagent.storage.names`)
Lfn = Annotated[str, Field(pattern=LFN_PATTERN), AfterValidator(check_input_name)]

_SCALARS = (str, int, float, bool)

#: kinds agents can run; the others are refused at the door until they can.
#: A validation context {"preview_kinds": {...}} lets tests build kinds not yet runnable.
RUNNABLE_KINDS = frozenset({"montecarlo", "processing"})
#: the validation context of a workflow as agents get it: processing without `input.files`
AGENT_VIEW: dict[str, Any] = {"agent_view": True}


def _agent_view(info: ValidationInfo) -> bool:
    return bool((info.context or {}).get("agent_view"))


class Section(BaseModel):
    """Base of every section: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True)


def field_error(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A validation error at `loc` (relative to the model raising it), for checks that span
    fields but must still name the one field at fault."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "Workflow", [{"type": error, "loc": loc, "input": value}]
    )


# -- payload parameters: the transformation's own model, plus the reserved test knobs -------------

MAX_FAIL_ATTEMPTS = 100


class FailPlanItem(Section):
    """Job `job` (its index in the request) fails with `mode` on its first `attempts` attempts."""

    job: int = Field(ge=0, lt=MAX_JOBS)
    mode: FailMode
    attempts: int = Field(1, ge=1, le=MAX_FAIL_ATTEMPTS)


def _parse_fail_plan(value: Any) -> Any:
    """'3:exit,5:memory:2' -> [{job: 3, mode: exit}, {job: 5, mode: memory, attempts: 2}]."""
    if not isinstance(value, str):
        return value
    items = []
    for text in (t.strip() for t in value.split(",")):
        if not text:
            continue
        parts = [p.strip() for p in text.split(":")]
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[::2]):
            raise ValueError(f"item {text[:40]!r} is not JOB:MODE or JOB:MODE:ATTEMPTS")
        item: dict[str, Any] = {"job": int(parts[0]), "mode": parts[1]}
        if len(parts) == 3:
            item["attempts"] = int(parts[2])
        items.append(item)
    return items


FailPlan = Annotated[
    list[FailPlanItem], BeforeValidator(_parse_fail_plan), Field(max_length=MAX_JOBS)
]


class TestKnobs(Section):
    """Failure injection for tests and demos, reserved in every payload's parameters.

    - `fail_plan`: "3:exit,5:memory:2" (or a list of {job, mode, attempts}): job index 3 fails
      with mode `exit` on its first attempt, job 5 with `memory` on its first two;
    - `fail`: every production attempt draws a failure (`rate`, `mode`, `code`, ...);
    - `merge_drop_events`: every merge loses this many events.
    """

    fail_plan: FailPlan = Field(default_factory=list)
    fail: FailSpec | None = None
    merge_drop_events: int = Field(0, ge=0, le=MAX_TOTAL_EVENTS)

    @field_validator("fail_plan")
    @classmethod
    def _one_entry_per_job(cls, value: list[FailPlanItem]) -> list[FailPlanItem]:
        seen: set[int] = set()
        twice = sorted({i.job for i in value if i.job in seen or seen.add(i.job)})
        if twice:
            raise ValueError(f"job(s) {', '.join(map(str, twice[:10]))} planned more than once")
        return value

    def planned_failure(self, job_index: int, retry: int) -> FailSpec | None:
        """What attempt `retry` of job `job_index` is made to do: its planned failure, if any
        attempts of it remain, else the `fail` draw (or nothing)."""
        for item in self.fail_plan:
            if item.job == job_index and retry < item.attempts:
                return FailSpec(mode=item.mode, rate=1.0)
        return self.fail


KNOBS = frozenset(TestKnobs.model_fields)


class PythiaParameters(TestKnobs, PythiaParams):
    """`parameters` of a `pythia` payload: the agent's PythiaParams plus the test knobs."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CommandParameters(TestKnobs):
    """`parameters` of a `command` payload: the test knobs only (the argv is the command)."""


class ReconstructParameters(TestKnobs, ReconstructParams):
    """`parameters` of a `reconstruct` payload: the agent's ReconstructParams plus the test knobs."""

    model_config = ConfigDict(extra="forbid", strict=True)


#: registered transformations: name -> the model of its `payload.parameters`
TRANSFORMATIONS: dict[str, type[TestKnobs]] = {
    "pythia": PythiaParameters,
    "reconstruct": ReconstructParameters,
}
#: transformations that read input files (processing), and those that make events (Monte Carlo)
READS_INPUT = frozenset({"reconstruct"})


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
    # StepChain: keep this step's output although a later step consumes it, in its own dataset
    keep: bool = False
    output: Output | None = None
    _typed: TestKnobs | None = PrivateAttr(None)

    @field_validator("transformation")
    @classmethod
    def _registered(cls, value: str | None) -> str | None:
        if value is not None and value not in TRANSFORMATIONS:
            raise ValueError(
                f"unknown transformation {value!r}; registered: {', '.join(sorted(TRANSFORMATIONS))}"
            )
        return value

    @field_validator("parameters")
    @classmethod
    def _typed_values(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        errors: list[Any] = [
            _line_error((key,), _NOT_A_PARAMETER, item)
            for key, item in value.items()
            if not (_is_finite(item) and (key in KNOBS or _is_parameter_value(item)))
        ]
        model = _parameters_model(info.data.get("transformation"), info.data.get("command"))
        if model is not None and not errors:  # else the entry point itself is wrong, and reported
            try:
                model.model_validate(value, strict=True)
            except ValidationError as exc:
                errors = [_explained(err, model) for err in exc.errors(include_url=False)]
        if errors:  # raised from here, each error is named payload.parameters.<key>...
            raise ValidationError.from_exception_data("Parameters", errors)
        return value

    @model_validator(mode="after")
    def _one_entry_point(self) -> Payload:
        if (self.transformation is None) == (self.command is None):
            raise ValueError("give exactly one of 'transformation' or 'command'")
        return self

    @property
    def typed_parameters(self) -> TestKnobs:
        """`parameters` parsed by the transformation's model (defaults filled in)."""
        if self._typed is None:
            model = _parameters_model(self.transformation, self.command) or CommandParameters
            self._typed = model.model_validate(self.parameters, strict=True)
        return self._typed

    def transformation_params(self) -> dict[str, Any]:
        """The transformation's own parameters (the test knobs left out), for the job spec."""
        if self.transformation is None:
            return {}
        return self.typed_parameters.model_dump(exclude=set(KNOBS))


def _parameters_model(transformation: str | None, command: Any) -> type[TestKnobs] | None:
    if transformation is not None:
        return TRANSFORMATIONS.get(transformation)
    return CommandParameters if command is not None else None


_NOT_A_PARAMETER = (
    "must be a finite number, string or boolean, or a list or flat mapping of those"
)


def _line_error(loc: tuple[str | int, ...], message: str, value: Any) -> Any:
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return {"type": error, "loc": loc, "input": value}


def _explained(err: Any, model: type[TestKnobs]) -> Any:
    """A parameter model's error as a line error; an unknown key lists the allowed ones."""
    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
        key = str(err["loc"][0])
        allowed = sorted(model.model_fields)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return _line_error(
            err["loc"], f"unknown parameter{hint}; allowed parameters: {', '.join(allowed)}",
            err["input"],
        )
    return {k: err[k] for k in ("type", "loc", "input", "ctx") if k in err}


def _is_scalar(item: Any) -> bool:
    """A string, boolean or finite number: NaN and infinities are not (JSON stores them as null)."""
    if isinstance(item, float):
        return math.isfinite(item)
    return isinstance(item, _SCALARS)


def _is_finite(item: Any, depth: int = 0) -> bool:
    """No NaN or infinity anywhere inside `item` (lists and mappings included)."""
    if isinstance(item, float):
        return math.isfinite(item)
    if isinstance(item, list | dict) and depth < 10:
        values = item.values() if isinstance(item, dict) else item
        return all(_is_finite(v, depth + 1) for v in values)
    return not isinstance(item, list | dict)


def _is_parameter_value(item: Any) -> bool:
    if isinstance(item, list):
        return len(item) <= 1000 and all(_is_scalar(x) for x in item)
    if isinstance(item, dict):
        return len(item) <= 100 and all(
            isinstance(k, str) and _is_scalar(v) for k, v in item.items()
        )
    return _is_scalar(item)


class EventSplit(Section):
    """Monte Carlo size: total events and events per job, a number or `auto`.

    `auto`: the agents size jobs to `target_job_s` from a few small scout jobs (the first
    `scouts` jobs), starting from the requester's guess `time_per_event_s`. ProdManager then
    cuts the request into allocations of `AUTO_CHUNK_JOBS` guessed job lengths, which agents cut
    into jobs of the measured length.

    A request of more than `MAX_ALLOCATIONS` jobs (or guessed jobs) puts several in each
    allocation, so that its allocations stay at most `MAX_ALLOCATIONS`; agents cut them into jobs.
    """

    total: int = Field(ge=1, le=MAX_TOTAL_EVENTS)
    per_job: int | str  # 1..MAX_PER_JOB events, or "auto" (checked below: one error, on this field)
    target_job_s: float | None = Field(None, ge=1, le=7 * 86400)
    time_per_event_s: float | None = Field(None, gt=0, le=86400)
    scouts: int = Field(4, ge=1, le=50)

    @field_validator("per_job")
    @classmethod
    def _not_above_total(cls, value: int | str, info: ValidationInfo) -> int | str:
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"per_job must be a number of events or 'auto', not {value[:20]!r}")
        if isinstance(value, int) and not 1 <= value <= MAX_PER_JOB:
            raise ValueError(f"per_job must be between 1 and {MAX_PER_JOB} events (got {value})")
        total = info.data.get("total")
        if isinstance(value, int) and total is not None and value > total:
            raise ValueError(
                f"per_job ({value}) is larger than total ({total}): the request would be one job "
                f"of {total} events; set per_job to at most {total}"
            )
        return value

    @model_validator(mode="after")
    def _not_too_many_jobs(self) -> EventSplit:
        if self.auto and (self.target_job_s is None or self.time_per_event_s is None):
            raise ValueError("per_job: auto needs target_job_s and time_per_event_s (your guess)")
        jobs = math.ceil(self.total / self.job_events)
        if jobs > MAX_JOBS:
            raise ValueError(
                f"total/per_job gives {jobs} jobs, more than the limit of {MAX_JOBS}; "
                "raise per_job or split the request"
            )
        return self

    @property
    def auto(self) -> bool:
        return self.per_job == "auto"

    @property
    def guessed_events_per_job(self) -> int:
        """auto: events per job from the requester's guess."""
        assert self.target_job_s is not None and self.time_per_event_s is not None
        return max(1, math.floor(self.target_job_s / self.time_per_event_s))

    @property
    def job_events(self) -> int:
        """Events per job: `per_job`, or for auto the guessed job length."""
        return self.per_job if isinstance(self.per_job, int) else self.guessed_events_per_job

    @property
    def jobs_per_allocation(self) -> int:
        """Jobs (for auto, guessed jobs) per allocation: one, or several for a large request; for
        auto at least `AUTO_CHUNK_JOBS`."""
        needed = math.ceil(math.ceil(self.total / self.job_events) / MAX_ALLOCATIONS)
        return max(AUTO_CHUNK_JOBS if self.auto else 1, needed)

    @property
    def allocation_events(self) -> int:
        """Events per allocation: whole jobs of `job_events`."""
        return min(self.total, self.jobs_per_allocation * self.job_events)

    @property
    def allocations(self) -> int:
        return math.ceil(self.total / self.allocation_events)

    @property
    def jobs(self) -> int:
        """Jobs of the request; for auto its allocations (each holds several jobs, of a length
        known only once the scouts have run)."""
        return self.allocations if self.auto else math.ceil(self.total / self.job_events)

    @property
    def seed_slots(self) -> int:
        """Seeds the request may use: one per job, or for auto one per event (a job's seed is
        its first event's)."""
        return self.total if self.auto else self.jobs


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
    """How unmerged job outputs are grouped into merged files (WMAgent's defaults).

    `per_run` (processing): a run's outputs are merged only once every file of the run is
    processed (or given up by an operator), in pieces of at most `max_size_bytes`, each named by
    the run and a sequence number; a run needing attention waits for an operator.
    """

    enabled: bool = True
    per_run: bool = False
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


NOTIFY_EVENTS = ("completed", "failed", "aborted", "attention")  # the notification vocabulary
NotifyEvent = Literal["completed", "failed", "aborted", "attention"]
EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$"


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook must be an http:// or https:// URL with a host")
    if any(c.isspace() for c in value) or parts.username or parts.password:
        raise ValueError("a webhook URL may hold no spaces and no user:password@")
    return value


EmailAddress = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]
WebhookUrl = Annotated[str, Field(min_length=8, max_length=2000), AfterValidator(_webhook_url)]


class Notify(Section):
    """Who hears about the request: e-mail addresses and Standard Webhooks endpoints (signed
    with the endpoint's secret from the operator), for the listed events."""

    email: list[EmailAddress] = Field(default_factory=list, max_length=20)
    webhooks: list[WebhookUrl] = Field(default_factory=list, max_length=10)
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS), max_length=4)


CHECKSUM_PATTERN = r"^(adler32:[0-9a-f]{8}|md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})$"


class InputFile(Section):
    """One input file of a processing workflow; a bare string is taken as its LFN."""

    lfn: Lfn
    run: int | None = Field(None, ge=0, le=2**32 - 1)
    chunk: int | None = Field(None, ge=0, le=10**9)
    events: int | None = Field(None, ge=0, le=10**9)
    size: int | None = Field(None, ge=0, le=TiB)
    checksum: str | None = Field(None, pattern=CHECKSUM_PATTERN)


def _lfn_to_file(value: Any) -> Any:
    return {"lfn": value} if isinstance(value, str) else value


class InputSpec(Section):
    """The input files and how they are cut into jobs.

    - `split: files`: `files_per_job` consecutive files per job;
    - `split: run`: one job per run (at most `files_per_job` files each, in chunk order);
    - `split: events`: consecutive files adding up to about `events_per_job` events per job
      (whole files; every file must declare `events`).

    `name_pattern` (a regular expression with named groups `run` and/or `chunk`, searched in the
    file's base name) fills in the run and chunk of files that do not give them, e.g.
    `cdr(?P<chunk>\\d+)-(?P<run>\\d+)\\.raw` for COMPASS' `cdr12019-275772.raw`.
    """

    files: list[Annotated[InputFile, BeforeValidator(_lfn_to_file)]] = Field(
        default_factory=list, max_length=MAX_ALLOCATIONS  # one job, one allocation per file group
    )
    #: or: the dataset another request produces, its files handed on as they are merged (TaskChain)
    dataset: str | None = Field(None, pattern=DATASET_PATTERN)
    name_pattern: str | None = Field(None, min_length=1, max_length=200)
    split: Literal["files", "run", "events"] = "files"
    files_per_job: int = Field(1, ge=1, le=10_000)
    events_per_job: int | None = Field(None, ge=1, le=10**9)

    @model_validator(mode="after")
    def _files_or_dataset(self, info: ValidationInfo) -> InputSpec:
        if self.dataset is None and not self.files and not _agent_view(info):
            raise field_error(("files",), "no input: give at least one file, or a dataset", [])
        if self.dataset is not None and self.files:
            raise field_error(("dataset",), "give input files or an input dataset, not both", self.dataset)
        return self

    @field_validator("name_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = set(re.compile(value).groupindex)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if not groups & {"run", "chunk"}:
            raise ValueError("needs a named group (?P<run>...) and/or (?P<chunk>...)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> InputSpec:
        if self.name_pattern is not None:
            self._fill_from_names(re.compile(self.name_pattern))
        seen: set[str] = set()
        dupes = sorted({f.lfn for f in self.files if f.lfn in seen or seen.add(f.lfn)})
        if dupes:
            raise ValueError(f"duplicate input files: {', '.join(dupes[:5])}")
        if self.split == "events":
            if self.events_per_job is None:
                raise field_error(("events_per_job",), "split: events needs events_per_job", None)
            for i, f in enumerate(self.files):
                if f.events is None:
                    raise field_error(("files", i, "events"), "split: events needs every file's events", None)
        if self.split == "run":
            for i, f in enumerate(self.files):
                if f.run is None:
                    raise field_error(("files", i, "run"),
                                      "split: run needs every file's run (or a name_pattern giving it)", None)
        return self

    def _fill_from_names(self, pattern: re.Pattern[str]) -> None:
        for i, f in enumerate(self.files):
            if f.run is not None and (f.chunk is not None or "chunk" not in pattern.groupindex):
                continue
            found = pattern.search(f.lfn.rsplit("/", 1)[-1])
            if found is None:
                raise field_error(("files", i, "lfn"),
                                  f"base name does not match name_pattern {self.name_pattern!r}", f.lfn)
            named = {k: int(v) for k, v in found.groupdict().items() if k in ("run", "chunk") and v}
            self.files[i] = f.model_copy(update={k: v for k, v in named.items() if getattr(f, k) is None})

    def groups(self) -> list[list[InputFile]]:
        """The files of each job, in job order."""
        files, per_job = self.files, self.files_per_job
        if self.split == "run":
            by_run: dict[int, list[InputFile]] = {}
            for f in files:
                by_run.setdefault(int(f.run or 0), []).append(f)
            out = []
            for run in sorted(by_run):
                ordered = sorted(by_run[run], key=lambda f: (f.chunk is None, f.chunk or 0, f.lfn))
                out += [ordered[i : i + per_job] for i in range(0, len(ordered), per_job)]
            return out
        if self.split == "events":
            out, current, events = [], [], 0
            for f in files:
                if current and events + int(f.events or 0) > int(self.events_per_job or 0):
                    out.append(current)
                    current, events = [], 0
                current.append(f)
                events += int(f.events or 0)
            return out + ([current] if current else [])
        return [files[i : i + per_job] for i in range(0, len(files), per_job)]

    @property
    def jobs(self) -> int:
        """Jobs known at submission (a dataset's files come later, one job per file)."""
        return len(self.groups())


MAIN_STEP = "main"  # the name of the payload's own step in a StepChain


class Step(Payload):
    """A further step run inside the same job after the payload (StepChain): its own
    transformation and parameters, reading the output of the step named by `input` from the
    job's work area. The last step's output is the job's output."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    input: str = Field(MAIN_STEP, pattern=r"^[a-z][a-z0-9_-]{0,39}$")


class _Common(Section):
    name: Name
    description: str = Field("", max_length=2000)
    payload: Payload
    steps: list[Step] = Field(default_factory=list, max_length=20)
    output: Output
    merge: MergeSettings = Field(default_factory=MergeSettings)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    resources: Resources = Field(default_factory=Resources)
    priority: int = Field(1000, ge=0, le=1_000_000)  # orders work within its group
    group: str = Field("default", pattern=GROUP_PATTERN)  # fair shares: ProdManager's `--share GROUP=W`
    sites: Sites = Field(default_factory=Sites)
    notify: Notify = Field(default_factory=Notify)

    @property
    def jobs(self) -> int:
        raise NotImplementedError

    @model_validator(mode="after")
    def _steps_chain(self) -> _Common:
        self._kept_outputs()
        produced = {MAIN_STEP}
        for i, step in enumerate(self.steps):
            if step.name in produced:
                raise field_error(("steps", i, "name"), f"step name {step.name!r} is used twice", step.name)
            if step.input not in produced:
                raise field_error(("steps", i, "input"),
                                  f"no step before it produces output {step.input!r} "
                                  f"(available: {', '.join(sorted(produced))})", step.input)
            if step.transformation not in READS_INPUT:
                raise field_error(("steps", i, "transformation"),
                                  "a later step must read its input: " + ", ".join(sorted(READS_INPUT)),
                                  step.transformation)
            produced.add(step.name)
        return self

    def _kept_outputs(self) -> None:
        """Every step but the last keeps its output only if marked `keep`, then in its own
        dataset; the last step's output is the workflow's `output`."""
        chain: list[tuple[tuple[str | int, ...], Payload]] = [(("payload",), self.payload)]
        chain += [(("steps", i), step) for i, step in enumerate(self.steps)]
        datasets = {self.output.dataset}
        for n, (where, step) in enumerate(chain):
            last = n == len(chain) - 1
            if last and (step.keep or step.output is not None):
                raise field_error((*where, "keep"), "the last step's output is always kept, "
                                  "in the workflow's output dataset", step.keep)
            if step.keep != (step.output is not None):
                raise field_error((*where, "output"), "a kept step output needs its own output "
                                  "dataset, and only a kept one", None)
            if step.output is not None:
                if step.output.dataset in datasets:
                    raise field_error((*where, "output", "dataset"), f"dataset {step.output.dataset!r} "
                                      "is already the output of another step", step.output.dataset)
                datasets.add(step.output.dataset)

    def kept_steps(self) -> list[tuple[str, Output]]:
        """(step name, its output) of each intermediate step whose output is kept."""
        chain = [(MAIN_STEP, self.payload), *((s.name, s) for s in self.steps)]
        return [(name, step.output) for name, step in chain if step.keep and step.output is not None]

    @model_validator(mode="after")
    def _fail_plan_within_jobs(self, info: ValidationInfo) -> _Common:
        if _agent_view(info):  # the agent has the request's jobs one allocation at a time
            return self
        if getattr(getattr(self, "input", None), "dataset", None):  # jobs come as files are merged
            return self
        plan = self.payload.typed_parameters.fail_plan
        for i, item in enumerate(plan):
            if item.job >= self.jobs:
                raise field_error(
                    ("payload", "parameters", "fail_plan", i, "job"),
                    f"job index {item.job} is beyond the request's {self.jobs} job(s) "
                    f"(indices 0..{self.jobs - 1})",
                    item.job,
                )
        return self


class MonteCarloWorkflow(_Common):
    """Generate events from nothing: split by events per job."""

    kind: Literal["montecarlo"]
    events: EventSplit
    seeds: SeedPolicy = Field(default_factory=SeedPolicy)
    run_number: int | None = Field(None, ge=1, le=999_999)

    @model_validator(mode="after")
    def _seeds_fit(self) -> MonteCarloWorkflow:
        jobs = self.events.seed_slots
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

    @model_validator(mode="after")
    def _transformation_makes_events(self) -> MonteCarloWorkflow:
        t = self.payload.transformation
        if t in READS_INPUT:
            raise field_error(("payload", "transformation"),
                              f"{t!r} reads input files: use kind: processing with an input section", t)
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

    @field_validator("kind")
    @classmethod
    def _runnable(cls, value: str, info: ValidationInfo) -> str:
        if value not in RUNNABLE_KINDS and value not in (info.context or {}).get("preview_kinds", ()):
            raise ValueError(
                f"{value} requests are not yet runnable by agents; accepted kinds: "
                + ", ".join(sorted(RUNNABLE_KINDS))
            )
        return value

    @model_validator(mode="after")
    def _not_its_own_input(self) -> ProcessingWorkflow:
        if self.input.dataset is not None and self.input.dataset == self.output.dataset:
            raise field_error(("input", "dataset"),
                              "a cycle: the request would consume its own output dataset", self.input.dataset)
        return self

    @model_validator(mode="after")
    def _transformation_reads_input(self) -> ProcessingWorkflow:
        t = self.payload.transformation
        if t is not None and t not in READS_INPUT:
            raise field_error(("payload", "transformation"),
                              f"{t!r} reads no input files; processing transformations: "
                              + ", ".join(sorted(READS_INPUT)), t)
        return self

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
