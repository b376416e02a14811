"""Every message type of the agent, declared once: its payload model, producers and consumers.

The message service refuses to publish a type not declared here (or by a plugin module through
`declare`), a payload its model refuses, or a type from a component that is not one of its
declared producers (`operator` is the command line). A component's `@handles` names must be
declared types. The declarations are the vocabulary's one place: tests check that each type has
a consumer, and that the declared consumers are exactly the components that handle it.

Payloads are validated with their pydantic model on publish (they carry at most a few thousand
ids; validation costs microseconds against a database round trip); the dict published is the
one given, so a model never rewrites what a consumer reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prodagent.errors import ProdAgentError

OPERATOR = "operator"  # the `prodagent` command line, as a producer


class MessageTypeError(ProdAgentError):
    """A message type that is not declared, a payload its model refuses, or a foreign producer."""


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobIds(Payload):
    job_ids: list[int] = Field(min_length=1)


class JobIdsWithReason(JobIds):
    reason: str = ""


class AllocationIds(Payload):
    allocation_ids: list[str] = Field(min_length=1)


class MergeAccepted(Payload):
    merge_job_id: int
    dataset_id: int
    file_id: int


class ResourcesAvailable(Payload):
    free: dict[str, int]


class Timestamp(Payload):
    sent_at: float


class Anything(BaseModel):
    """For test and benchmark types whose payloads are free-form."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class MessageType:
    name: str
    payload: type[BaseModel]
    producers: frozenset[str]
    consumers: frozenset[str]
    doc: str = ""


DECLARED: dict[str, MessageType] = {}


def declare(name: str, payload: type[BaseModel], producers: Iterable[str], consumers: Iterable[str],
            doc: str = "") -> MessageType:
    """Declare a message type; declaring the same type again identically is a no-op.

    `producers` are component names (or `OPERATOR`); empty for a type only tests or scripts send
    (a publish with no `source`).
    """
    spec = MessageType(name, payload, frozenset(producers), frozenset(consumers), doc)
    known = DECLARED.get(name)
    if known is not None and known != spec:
        raise MessageTypeError(f"message type {name!r} is declared twice, differently")
    if not spec.consumers:
        raise MessageTypeError(f"message type {name!r} has no consumer")
    DECLARED[name] = spec
    return spec


def get(name: str) -> MessageType:
    spec = DECLARED.get(name)
    if spec is None:
        raise MessageTypeError(f"message type {name!r} is not declared (prodagent.messaging.types)")
    return spec


def check(name: str, payload: Mapping[str, Any], source: str | None = None) -> None:
    """Refuse an undeclared type, a payload its model refuses, or a producer not declared for it."""
    spec = get(name)
    if source is not None and source not in spec.producers:
        raise MessageTypeError(f"{source} is not a declared producer of {name} "
                               f"(producers: {', '.join(sorted(spec.producers))})")
    try:
        spec.payload.model_validate(payload)
    except ValidationError as exc:
        raise MessageTypeError(f"{name} payload refused: {exc.errors(include_url=False)[:3]}") from None


# -- the agent's own types ---------------------------------------------------------------------

declare("AllocationAcquired", AllocationIds, {"ProdMgrInterface"}, {"JobCreator"},
        "allocations leased from ProdManager, to be cut into jobs")
declare("JobCreated", JobIds, {"JobCreator", "MergeSensor"}, {"JobSubmitter"},
        "jobs in state created, to be submitted")
declare("JobFailed", JobIds, {"JobSubmitter", "JobTracker", "MergeSensor"}, {"ErrorHandler"},
        "jobs in submitfailed, jobfailed or lost, to be decided")
declare("JobSuccess", JobIds, {"JobTracker"}, {"MergeSensor"},
        "jobs in state success: production outputs to merge, merges to judge")
declare("RetryJob", JobIdsWithReason, {"ErrorHandler", "ProdMgrInterface", OPERATOR}, {"JobCreator"},
        "jobs whose cool-off is over (or resubmitted by an operator): their next attempt")
declare("KillJobs", JobIdsWithReason, {"ProdMgrInterface", OPERATOR}, {"JobSubmitter"},
        "jobs to kill (a producer records the kill itself: JobSubmitter removes the batch jobs at once)")
declare("MergeAccepted", MergeAccepted, {"MergeSensor"}, {"ProdMgrInterface", "Cleanup"},
        "a merged file registered: report it, free its inputs")
declare("ResourcesAvailable", ResourcesAvailable, {"ResourceMonitor"}, {"ProdMgrInterface"},
        "free slots per site changed: acquire work")
declare("Ping", Timestamp, {"Ping"}, {"Echo"}, "the built-in round trip")
declare("Pong", Timestamp, {"Echo"}, {"Ping"}, "the built-in round trip's answer")

# The agent's own vocabulary (plugins and tests may declare more).
AGENT_TYPES = frozenset(DECLARED)
