"""The HTCondor submit description and per-job item data for one batch (pure, no schedd).

One description serves the whole batch (one cluster); everything that differs between jobs is a
macro filled from the item data: executable, arguments, environment, directory, limits and the
agent's job id, which goes into the custom attribute ProdAgentJobId and into the SUBMIT event's
notes (so the job event log alone also maps procs to agent jobs).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence

from prodagent.batch.base import BatchJob

JOB_ID_ATTR = "ProdAgentJobId"
INSTANCE_ATTR = "ProdAgentInstance"
# HoldReasonSubCode our own memory policy sets, so the mapping can tell it from other policies.
MEMORY_HOLD_SUBCODE = 34
MEMORY_HOLD_EXPR = "ifThenElse(isUndefined(MemoryUsage), false, MemoryUsage > RequestMemory)"


def quote_arguments(argv: Sequence[str]) -> str:
    """argv in HTCondor's "new" argument syntax: double-quoted, each item single-quoted."""
    return '"' + " ".join(_quote_item(a) for a in argv) + '"'


def quote_environment(env: Mapping[str, str]) -> str:
    """An environment in HTCondor's "new" syntax: "K1='v 1' K2=v2"."""
    return '"' + " ".join(f"{k}={_quote_item(v)}" for k, v in sorted(env.items())) + '"'


def _quote_item(item: str) -> str:
    if "\n" in item or "\r" in item:
        raise ValueError("HTCondor arguments cannot contain newlines")
    escaped = item.replace('"', '""').replace("'", "''")
    if item == "" or any(c in item for c in " \t'\""):
        return f"'{escaped}'"
    return escaped


def description(event_log: str, instance: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The submit description shared by every job of a batch."""
    desc = {
        "universe": "vanilla",
        "executable": "$(pa_executable)",
        "arguments": "$(pa_arguments)",
        "environment": "$(pa_environment)",
        "initialdir": "$(pa_workdir)",
        "output": "batch.out",
        "error": "batch.err",
        "log": event_log,
        "request_memory": "$(pa_memory_mb)",
        "requirements": "$(pa_requirements)",  # black-hole nodes excluded per job
        "allowed_execute_duration": "$(pa_time_s)",
        "transfer_executable": "false",
        "should_transfer_files": "IF_NEEDED",
        "when_to_transfer_output": "ON_EXIT",
        "submit_event_notes": "$(pa_job_id)",
        f"My.{JOB_ID_ATTR}": '"$(pa_job_id)"',
        f"My.{INSTANCE_ATTR}": f'"{instance}"',
        "periodic_hold": MEMORY_HOLD_EXPR,
        "periodic_hold_reason": '"memory usage exceeded request_memory"',
        "periodic_hold_subcode": str(MEMORY_HOLD_SUBCODE),
    }
    desc.update(extra)
    return desc


def item(job: BatchJob) -> dict[str, str]:
    """The per-job item data; raises ValueError for a job HTCondor cannot express."""
    if not job.command:
        raise ValueError("empty command")
    executable = shutil.which(job.command[0]) or job.command[0]
    return {
        "pa_job_id": job.job_id,
        "pa_executable": executable,
        "pa_arguments": quote_arguments(job.command[1:]),
        "pa_environment": quote_environment(job.env),
        "pa_workdir": str(job.workdir),
        "pa_memory_mb": str(job.memory_mb),
        "pa_time_s": str(job.time_s),
        "pa_requirements": requirements(job.exclude_nodes),
    }


def requirements(exclude_nodes: Sequence[str]) -> str:
    """A requirement keeping the job off these machines (`True` when none)."""
    if any('"' in n or "\\" in n for n in exclude_nodes):
        raise ValueError("node names cannot contain quotes")
    return " && ".join(f'(TARGET.Machine =!= "{n}")' for n in exclude_nodes) or "True"
