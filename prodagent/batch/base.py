"""The batch-plugin interface: submit many, query many, kill many.

Every engine (local executor, Slurm, HTCondor, JobEmulator) implements `BatchPlugin` in a module
of its own. The agent owns the database and the job state machine; a plugin only talks to its
batch system. Each submitted job carries the agent's job id in the engine's own metadata so that
`find_submitted` can recover after a crash instead of submitting twice.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from prodagent.errors import ProdAgentError


class BatchUnavailable(ProdAgentError):
    """The batch system did not answer or refused a command; the caller tries again later.

    Raised instead of reporting jobs LOST when the engine cannot be asked at all.
    """


class BatchState(enum.StrEnum):
    """Where a job stands in the batch system, as seen by the plugin."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # the batch system ran it to the end; the exit code says how the payload fared
    FAILED = "failed"  # the batch system itself failed it (memory, time, node, preemption, hold)
    LOST = "lost"  # the batch system no longer knows the job


class PluginOptions(BaseModel):
    """Base of each plugin's options; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class BatchJob:
    """One job to submit. `job_id` is the agent's id and must be carried by the engine."""

    job_id: str
    command: Sequence[str]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 2000
    time_s: int = 3600
    site: str | None = None
    exclude_nodes: tuple[str, ...] = ()  # nodes this job must not run on (black holes)


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through a call, and a
class BatchStatus:       # cycle makes one per job in the batch system (100,000: 0.3 s)
    """One job's status. `error_class` names a batch-level failure (OUT_OF_MEMORY, TIMEOUT, ...)."""

    job_id: str
    state: BatchState
    batch_id: str | None = None
    exit_code: int | None = None
    error_class: str | None = None
    reason: str | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    node: str | None = None  # where it ran, when the engine says


@dataclass(frozen=True)
class SiteSlots:
    """Capacity of one site or queue: configured slots, and jobs running and queued there."""

    site: str
    slots: int
    running: int
    queued: int

    @property
    def free(self) -> int:
        return max(0, self.slots - self.running - self.queued)


class BatchPlugin(ABC):
    """Base of every engine. Constructed with its validated options and the agent's work dir."""

    name: ClassVar[str]
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir

    @abstractmethod
    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        """Submit jobs in bulk; return {job_id: batch_id} for those accepted.

        A job missing from the result was not submitted (the caller records a submit failure).
        """

    @abstractmethod
    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        """Status of many jobs in one pass. A job the engine does not know is LOST."""

    @abstractmethod
    def kill(self, job_ids: Iterable[str]) -> None:
        """Remove jobs from the engine; unknown ids are ignored."""

    @abstractmethod
    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Which of these agent job ids the engine already holds: {job_id: batch_id}."""

    @abstractmethod
    def capacity(self) -> list[SiteSlots]:
        """Slots per site or queue, with jobs running and queued there."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, file handles)."""
