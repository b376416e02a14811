"""Failure classification: a table of rules from the configuration, first match wins.

A rule matches on any of: the job's error code (from the job report or the tracker), the
payload's exit code, the batch system's error class, a regular expression over the tail of the
job's log, and the job type. Its action is one of retry, retry_more_memory, retry_more_time,
pause (an operator must look) or exhaust. The defaults carry the COMPASS lessons: "A FATAL ERROR
APPEARED" needs a person; "Cannot Allocate N Bytes" is retried with more memory; a missing or
empty output, or no "End of Job" line, is retried; so is a stage-out that failed for good
(StageOutFailed) and a replica found corrupt when read back (CorruptReplica): the job is redone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prodagent.payload import codes

Action = Literal["retry", "retry_more_memory", "retry_more_time", "pause", "exhaust"]
LOG_TAIL_BYTES = 65536


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    action: Action
    error_codes: list[int] = Field(default_factory=list)
    exit_codes: list[int] = Field(default_factory=list)
    batch_classes: list[str] = Field(default_factory=list)
    log_pattern: str | None = None
    job_type: Literal["production", "merge"] | None = None

    def matches(self, failure: Failure) -> bool:
        if self.job_type and self.job_type != failure.job_type:
            return False
        tests = []
        if self.error_codes:
            tests.append(failure.error_code in self.error_codes)
        if self.exit_codes:
            tests.append(failure.exit_code in self.exit_codes)
        if self.batch_classes:
            tests.append(failure.batch_class in self.batch_classes)
        if self.log_pattern:
            tests.append(bool(re.search(self.log_pattern, failure.log_tail, re.MULTILINE)))
        return any(tests) if tests else True


DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "FatalError", "action": "pause", "log_pattern": r"A FATAL ERROR APPEARED"},
    {"name": "OutOfMemory", "action": "retry_more_memory",
     "log_pattern": r"Cannot Allocate \d+ Bytes|MemoryError|std::bad_alloc",
     "error_codes": [codes.MEMORY_LIMIT], "batch_classes": ["OUT_OF_MEMORY"]},
    {"name": "Timeout", "action": "retry_more_time", "error_codes": [codes.TIME_LIMIT], "batch_classes": ["TIMEOUT"]},
    {"name": "MergeEventMismatch", "action": "retry", "job_type": "merge",
     "error_codes": [codes.EVENT_COUNT_MISMATCH], "exit_codes": [codes.MERGE_COUNT_MISMATCH, codes.MERGE_DUPLICATES]},
    {"name": "MissingOutput", "action": "retry", "error_codes": [codes.MISSING_OUTPUT]},
    {"name": "EmptyOutput", "action": "retry", "error_codes": [codes.EMPTY_OUTPUT, codes.UNREADABLE_OUTPUT]},
    {"name": "NoEndOfJob", "action": "retry", "error_codes": [codes.NO_END_OF_JOB]},
    {"name": "BadOutput", "action": "retry", "error_codes": [codes.EVENT_COUNT_MISMATCH, codes.NUMBERING_MISMATCH]},
    {"name": "StageOutFailed", "action": "retry", "error_codes": [codes.STAGEOUT_FAILED]},
    {"name": "CorruptReplica", "action": "retry", "error_codes": [codes.REPLICA_CORRUPT]},
    {"name": "Lost", "action": "retry", "batch_classes": ["Lost"]},
    {"name": "Infrastructure", "action": "retry", "batch_classes": ["NODE_FAIL", "PREEMPTED", "SubmitFailed", "BatchFailure"]},
    {"name": "Cancelled", "action": "pause", "batch_classes": ["CANCELLED"]},
    {"name": "BadSpec", "action": "pause", "error_codes": [codes.BAD_SPEC, codes.EXEC_FAILED, codes.WRAPPER_ERROR]},
    {"name": "PayloadError", "action": "retry"},
]


@dataclass(frozen=True)
class Failure:
    job_type: str
    error_code: int | None
    exit_code: int | None
    batch_class: str | None
    log_tail: str


@dataclass(frozen=True)
class Decision:
    error_class: str
    action: Action
    delay_s: float
    reason: str


def cooloff_delay(policy: str, base_s: float, retry: int) -> float:
    """Delay before attempt `retry + 1`: linear, squared or exponential in the retry count."""
    n = retry + 1
    if policy == "linear":
        return base_s * n
    if policy == "squared":
        return base_s * n * n
    return base_s * (2 ** (n - 1))


def read_log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def classify(rules: list[Rule], failure: Failure) -> Rule:
    for rule in rules:
        if rule.matches(failure):
            return rule
    return Rule(name="Unclassified", action="retry")
