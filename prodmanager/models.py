"""The data that crosses the wire, shared by the server (FastAPI) and `prodmanager.client`.

Times are UNIX seconds (float). Counters are derived from the agents' reports, never typed in.
The central one is `Allocation`: what an agent gets from `acquire` and needs to create its job.

Everything a caller sends is bounded: numbers fit a signed 64-bit column (ids and counts are
0..2**63-1), strings have a length and a pattern or are one line of real Unicode without control
characters (`prodmanager.text`), lists have a length.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prodmanager.text import SafeLine

AGENT_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,100}$"
JOB_STATE_PATTERN = r"^[a-z][a-z_]{0,19}$"
SITE_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
LFN_PATTERN = r"^[A-Za-z0-9_./:+=@-]{1,500}$"
INT64_MAX = 2**63 - 1
MAX_COMPLETION_FILES = 10_000  # output files in one bulk completion
MAX_MERGED_INPUTS = 100_000  # input files named by one merged report

# Strict: a quoted number, a float or a boolean in a report is a wrong type, not a number.
Id = Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]
LeaseToken = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Lfn = Annotated[str, Field(pattern=LFN_PATTERN)]
Reason = Annotated[SafeLine, Field(max_length=500)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Role(StrEnum):
    REQUESTER = "requester"
    OPERATOR = "operator"
    AGENT = "agent"


# --- agents and the pull protocol ----------------------------------------------------------------


class AgentRegistration(Wire):
    """An agent introduces itself: its name, the sites it serves, how many jobs it can hold."""

    name: str = Field(pattern=AGENT_NAME_PATTERN)
    sites: list[Annotated[str, Field(pattern=SITE_PATTERN)]] = Field(
        default_factory=list, max_length=500
    )
    capacity: int = Field(ge=1, le=1_000_000)


class AgentInfo(AgentRegistration):
    token_name: str
    registered_at: float
    last_seen: float
    held: int = Field(description="jobs in the allocations currently leased by this agent (capacity counts jobs)")


class AcquireRequest(Wire):
    """Ask for work: allocations until their jobs reach `jobs` (an allocation may hold several
    jobs; at least one allocation), or allocations worth at most `events` events.

    With neither, the agent gets up to its registered capacity (in jobs) minus the jobs it
    already holds. The server never hands an agent more than that, whatever it asks for (but
    for the one allocation that reaches it).
    """

    jobs: int | None = Field(None, ge=1, le=10_000)
    events: int | None = Field(None, ge=1, le=INT64_MAX)
    lease_seconds: float | None = Field(None, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_measure(self) -> AcquireRequest:
        if self.jobs is not None and self.events is not None:
            raise ValueError("give jobs or events, not both")
        return self


class InputFileRef(Wire):
    lfn: str
    pfn: str | None = None
    run: int | None = None
    chunk: int | None = None
    events: int | None = None
    size: int | None = None
    checksum: str | None = None


class Allocation(Wire):
    """One job's worth of work, leased to one agent.

    - `lease_token` proves the lease in renew/report/complete/release; `lease_expires` is when
      it lapses unless renewed; `lease_epoch` counts how often this allocation was handed out.
    - Monte Carlo: generate events `first_event` .. `first_event + n_events - 1` of run
      `run_number` with random seed `seed` (unique per job in the request, the same on every
      retry, so output is reproducible).
    - Processing: run over `input_files` (`first_event` is 0, `n_events` their declared events).
    - `n_jobs`: how many jobs it holds (what acquire and capacity count).
    - `spec` is the validated workflow as a dict (payload, output, merge, retry, resources...);
      for processing workflows `spec["input"]["files"]` is left out: `input_files` is the part
      for this job.
    """

    allocation_id: int
    lease_token: str
    lease_expires: float
    lease_epoch: int
    request_id: int
    request_name: str
    kind: Literal["montecarlo", "processing"]
    job_index: int
    run_number: int
    first_event: int
    n_events: int
    # jobs it holds (several for a large request; for `per_job: auto` a guess); an older server
    # sends none: one
    n_jobs: int = 1
    seed: int
    input_files: list[InputFileRef] = Field(default_factory=list)
    spec: dict[str, Any]


class AcquireResponse(Wire):
    allocations: list[Allocation]
    lease_seconds: float


class LeaseRef(Wire):
    allocation_id: Id
    lease_token: LeaseToken


class RenewRequest(Wire):
    leases: list[LeaseRef] = Field(max_length=10_000)


class LeaseStatus(StrEnum):
    OK = "ok"  # renewed until lease_expires
    EXPIRED = "expired"  # lost: another agent has it, or another lease finished it; stop working on it
    RECALLED = "recalled"  # the request was aborted: kill the job
    # Already finished under this very lease: the answer to the agent's completion (or failed
    # release) was lost. Not lost work: the agent repeats its final call and gets its answer.
    FINISHED = "finished"


class RenewResult(Wire):
    allocation_id: int
    status: LeaseStatus
    lease_expires: float | None = None


class RenewResponse(Wire):
    results: list[RenewResult]


class OutputFile(Wire):
    lfn: Lfn
    size: Count
    checksum: str = Field(pattern=r"^[A-Za-z0-9:_.+/=-]{1,100}$")
    events: Count
    pfn: str | None = Field(None, max_length=1000, pattern=r"^[A-Za-z0-9_./:+=@-]+$")  # where it is


class ProgressReport(Wire):
    """Progress of a held allocation: events done so far (not added: replaces the last value),
    the agent's job state, and output files already produced. Also extends the lease."""

    lease_token: LeaseToken
    events_done: Count = 0
    job_state: str | None = Field(None, pattern=JOB_STATE_PATTERN)
    files: list[OutputFile] = Field(default_factory=list, max_length=1000)


class CompleteReport(Wire):
    """The allocation's job succeeded: final events and its output files."""

    lease_token: LeaseToken
    events_done: Count
    files: list[OutputFile] = Field(default_factory=list, max_length=1000)


class ReleaseRequest(Wire):
    """Give an allocation back: `failed` marks it failed for good (retries exhausted) so that
    `clone` can resubmit it; otherwise it is free for the next acquire at once."""

    lease_token: LeaseToken
    failed: bool = False
    reason: Reason = ""


class AllocationAck(Wire):
    allocation_id: int
    state: str
    events_done: int
    files_accepted: int
    files_duplicate: int


class CompleteItem(CompleteReport):
    """One allocation in a bulk completion."""

    allocation_id: Id


class CompleteMany(Wire):
    """Completions of many allocations in one call (and one ProdManager transaction), with at
    most MAX_COMPLETION_FILES output files in all."""

    items: list[CompleteItem] = Field(min_length=1, max_length=500)

    @field_validator("items")
    @classmethod
    def _bounded_files(cls, items: list[CompleteItem]) -> list[CompleteItem]:
        files = sum(len(item.files) for item in items)
        if files > MAX_COMPLETION_FILES:
            raise ValueError(
                f"{files} output files in one call, more than {MAX_COMPLETION_FILES}; "
                "send fewer items per call"
            )
        return items


class CompleteOutcome(Wire):
    """What became of one item of a bulk completion: `ack`, or the error the single call gives."""

    allocation_id: int
    ack: AllocationAck | None = None
    error: str | None = None  # the error code: lease_lost, not_found, invalid
    status: str | None = None  # for lease_lost: expired | recalled
    detail: str = ""


class CompleteManyAck(Wire):
    results: list[CompleteOutcome]


class MergedFile(OutputFile):
    inputs: list[Lfn] = Field(min_length=1, max_length=MAX_MERGED_INPUTS)
    # the files of other tasks (or outside ProdManager) its inputs were made from
    parents: list[Lfn] = Field(default_factory=list, max_length=MAX_MERGED_INPUTS)


class FileInfo(Wire):
    """A registered file of a request, with the files of other tasks it derives from."""

    lfn: str
    kind: Literal["unmerged", "merged"]
    state: str
    events: int
    pfn: str | None
    parents: list[str]


class MergedReport(Wire):
    """Merged files of a request: each names the unmerged files it replaces. Inputs must be
    valid outputs of finished allocations, each merged once."""

    request_id: Id
    files: list[MergedFile] = Field(min_length=1, max_length=1000)

    @field_validator("files")
    @classmethod
    def _bounded_inputs(cls, files: list[MergedFile]) -> list[MergedFile]:
        inputs = sum(len(f.inputs) for f in files)
        if inputs > MAX_MERGED_INPUTS:
            raise ValueError(f"{inputs} input files in one report, more than {MAX_MERGED_INPUTS}")
        return files


class MergedAck(Wire):
    request_id: int
    files_accepted: int
    files_duplicate: int
    request_state: str


# --- requests -----------------------------------------------------------------------------------


class Counters(Wire):
    """Derived from allocations and reports. `allocations` counts by state (available, leased,
    done, failed, recalled); `jobs` counts the job states agents reported for work they hold."""

    events_requested: int
    events_allocated: int
    events_in_progress: int
    events_produced: int
    events_failed: int
    events_merged: int
    allocations: dict[str, int]
    jobs: dict[str, int]
    files_unmerged: int
    files_merged: int
    bytes_produced: int
    bytes_merged: int


class RequestSummary(Wire):
    id: int
    name: str
    kind: str
    owner: str
    state: str
    priority: int
    total_events: int
    total_jobs: int
    run_number: int
    parent_id: int | None
    created_at: float
    updated_at: float
    counters: Counters


class HistoryEntry(Wire):
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: float


class RequestDetail(RequestSummary):
    spec: dict[str, Any]
    history: list[HistoryEntry]
    producer_id: int | None = None  # a chained request: the request producing its input dataset
    steps: dict[str, dict[str, int]] = Field(default_factory=dict)  # a multi-step request: attempts by outcome
    sizing: list[AgentSizing] = Field(default_factory=list)  # per_job auto: each agent's estimate


class SubmitResult(Wire):
    created: bool = Field(description="False when the same document was already submitted")
    request: RequestSummary


class ActionBody(Wire):
    reason: Reason = ""


class AllocationInfo(Wire):
    allocation_id: int
    request_id: int
    job_index: int
    first_event: int
    n_events: int
    seed: int
    state: str
    leased: bool
    agent: str | None
    lease_epoch: int
    lease_expires: float
    events_done: int
    job_state: str | None
    reason: str | None


class RunInfo(Wire):
    """A run of a processing request (`prodmanager.runs`): its input files by state, its
    events, its merge-gate state and why it needs attention, if it does."""

    run: int
    state: Literal["open", "needs_attention", "ready", "merged", "dropped"]
    reason: str
    files: dict[str, int]
    input_events: int
    processed_events: int
    merged_events: int
    decision: str | None


# --- job detail pushed by agents (the web monitor's job pages) ------------------------------------

LogLine = Annotated[SafeLine, Field(max_length=1000)]


class StepOutcome(Wire):
    """How one step of a multi-step job (StepChain) ended in an attempt."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    status: Literal["success", "failed"]
    reused: bool = False


class JobEvent(Wire):
    """One state change of one of an agent's jobs for a ProdManager allocation. `seq` is the
    agent's own increasing number of the change (its transition id): events are unique by
    (agent, seq), so a repeated push stores nothing twice. A failure carries the tail of the
    attempt's log, as lines (the door refuses control characters, newlines included)."""

    seq: Id
    allocation_id: Id
    job_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:+=@-]{1,200}$")]
    retry: Annotated[int, Field(ge=0, le=10_000, strict=True)]
    from_state: str | None = Field(None, pattern=JOB_STATE_PATTERN)
    to_state: str = Field(pattern=JOB_STATE_PATTERN)
    at: float = Field(ge=0, le=1e11)
    reason: Reason = ""
    site: str | None = Field(None, pattern=SITE_PATTERN)
    exit_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1, strict=True)
    error_class: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    memory_mb: Count | None = None
    wall_s: float | None = Field(None, ge=0, le=1e9)
    cpu_s: float | None = Field(None, ge=0, le=1e9)
    max_rss_mb: float | None = Field(None, ge=0, le=1e9)
    log_tail: list[LogLine] = Field(default_factory=list, max_length=400)
    steps: list[StepOutcome] = Field(default_factory=list, max_length=21)  # a multi-step attempt's end


class JobReport(Wire):
    events: list[JobEvent] = Field(max_length=200)


class JobReportAck(Wire):
    accepted: int = Field(description="events stored now (a repeated one is not counted)")
    last_seq: int = Field(description="the highest seq stored for this agent (0: none)")
    resubmit: list[int] = Field(
        default_factory=list,
        description="allocations whose job waits for an operator who asked to resubmit it",
    )


class ResubmitBody(Wire):
    """Resubmit the jobs of a request that wait for an operator (paused or exhausted), all or
    those whose last failure has this error class."""

    error_class: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class ResubmitResult(Wire):
    allocations: int = Field(description="jobs asked to be resubmitted (their agents act on it)")


class ComponentState(Wire):
    """One of an agent's components as `prodAgentd status` sees it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    alive: bool
    state: str = Field(pattern=JOB_STATE_PATTERN)  # alive | starting | stale | dead
    heartbeat_age_s: float | None = Field(None, ge=0, le=1e10)
    pending: Count = 0  # messages waiting in its queue
    dead_letters: Count = 0
    restarts: Count = 0


class AgentStatus(Wire):
    components: list[ComponentState] = Field(max_length=100)


# --- automatic job sizing pushed by agents (`events.per_job: auto`; prodmanager.sizing_reports) ------

SIZING_STATES = ("scouting", "sized", "paused")
MAX_SIZINGS = 100  # requests per push
MAX_FIGURES = 50  # figures per request
FigureName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# A measurement: a count or a finite number (a quoted number or a boolean is a wrong type).
Figure = (Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX, strict=True)]
          | Annotated[float, Field(ge=-1e18, le=1e18, allow_inf_nan=False, strict=True)])
Megabytes = Annotated[int, Field(ge=1, le=100_000_000, strict=True)]
JobSeconds = Annotated[int, Field(ge=1, le=365 * 86_400, strict=True)]


class RequestSizing(Wire):
    """One request's automatic job sizing on an agent: its state (`scouting` until the scouts
    end, `sized`, or `paused` with the reason), the estimate (events per job, memory and time
    each job asks for), the figures it was computed from (jobs measured, s/event, peak RSS...),
    the formula, as the agent sends it (declared once, on the agent), and when it was computed."""

    request_id: Id
    state: Literal["scouting", "sized", "paused"]
    events_per_job: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = None
    memory_mb: Megabytes | None = None
    time_s: JobSeconds | None = None
    figures: dict[FigureName, Figure] = Field(default_factory=dict, max_length=MAX_FIGURES)
    formula: Annotated[SafeLine, Field(min_length=1, max_length=2000)]
    reason: Reason | None = None
    computed_at: float = Field(ge=0, le=1e11)


class SizingReport(Wire):
    sizings: list[RequestSizing] = Field(max_length=MAX_SIZINGS)

    @field_validator("sizings")
    @classmethod
    def _once_each(cls, sizings: list[RequestSizing]) -> list[RequestSizing]:
        ids = [s.request_id for s in sizings]
        if len(set(ids)) != len(ids):
            raise ValueError("a request is named more than once")
        return sizings


class SizingAck(Wire):
    accepted: int = Field(description="sizings stored now (one not newer than the stored one is not)")


class AgentSizing(RequestSizing):
    """A request's sizing as one agent last pushed it (in `RequestDetail.sizing`)."""

    agent: str
    received_at: float


class ValidateResult(Wire):
    """A document that would be accepted as it is."""

    valid: bool


class WhoAmI(Wire):
    name: str
    role: Role


class FieldErrorBody(Wire):
    path: str
    message: str


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer: a code, a sentence, and for invalid input each field error."""

    error: str
    detail: str
    errors: list[FieldErrorBody] | None = None
    errors_omitted: int | None = Field(
        None, description="how many more errors were found than are listed"
    )
