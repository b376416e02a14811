"""Which unmerged files go into which merge job: the grouping policy, and remerge by hand.

`plan_merges` is pure: given a dataset's waiting files (id, size, events, registration time),
the request's merge settings, the clock and whether the request still has live production work,
it returns the groups to merge now. Files are taken greedily in file-id order, like WMAgent:

- a group grows until the next file would take it above `max_size_bytes` or `max_events`; it is
  then closed, and a closed group is merged as it is (it cannot grow in order any more);
- the open group (the last one) is merged once it reaches `min_size_bytes` or `max_events`,
  once its oldest file has waited `max_wait_s`, or when the request is idle (no production job
  of it is live in this agent), so the last files of a request never wait for the timeout;
- a file alone above `max_size_bytes` or `max_events` is merged alone;
- with merging disabled nothing is ever grouped;
- merged per run (`per_run`), only the files of runs ProdManager calls `ready` are grouped, each
  run alone and all of it at once (`plan_run_merges`), in pieces within the maximum size.

`remerge` gives the inputs of failed merge jobs (paused, exhausted or killed) back to their
dataset, so the next grouping merges them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodagent.jobs import states, store
from prodrequest.spec import MergeSettings


@dataclass(frozen=True)
class MergePolicy:
    """A request's merge settings (`workflow["merge"]`), with the request schema's defaults."""

    enabled: bool
    min_size_bytes: int
    max_size_bytes: int
    max_events: int
    max_wait_s: float
    per_run: bool = False

    @classmethod
    def from_workflow(cls, workflow: Mapping[str, Any]) -> MergePolicy:
        given = workflow.get("merge") or {}
        values = {name: given.get(name, field.default) for name, field in MergeSettings.model_fields.items()}
        return cls(
            enabled=bool(values["enabled"]), min_size_bytes=int(values["min_size_bytes"]),
            max_size_bytes=int(values["max_size_bytes"]), max_events=int(values["max_events"]),
            max_wait_s=float(values["max_wait_s"]), per_run=bool(values["per_run"]),
        )


@dataclass(frozen=True)
class Candidate:
    """An unmerged file waiting for a merge."""

    id: int
    size: int
    events: int
    created_at: float
    run: int | None = None


@dataclass(frozen=True)
class Group:
    """Files to merge together, and why now."""

    files: tuple[Candidate, ...]
    reason: str

    @property
    def ids(self) -> list[int]:
        return [f.id for f in self.files]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)


def plan_merges(files: Iterable[Candidate], policy: MergePolicy, now: float, idle: bool) -> list[Group]:
    """The groups of `files` that are ready to merge now, ordered by their first file id."""
    if not policy.enabled:
        return []
    ready: list[Group] = []
    current: list[Candidate] = []
    for f in sorted(files, key=lambda c: c.id):
        if f.size > policy.max_size_bytes or f.events > policy.max_events:
            ready.append(Group((f,), "a single file above the maximum size or events"))
            continue
        if current and (sum(c.size for c in current) + f.size > policy.max_size_bytes
                        or sum(c.events for c in current) + f.events > policy.max_events):
            ready.append(Group(tuple(current), _closed_reason(current, policy)))
            current = []
        current.append(f)
    if current:
        reason = _open_reason(current, policy, now, idle)
        if reason:
            ready.append(Group(tuple(current), reason))
    return sorted(ready, key=lambda g: g.files[0].id)


def plan_run_merges(files: Iterable[Candidate], policy: MergePolicy, ready_runs: set[int]) -> dict[int, list[Group]]:
    """Per run whose gate is open, the groups of all its files (pieces within the maximums)."""
    by_run: dict[int, list[Candidate]] = {}
    for f in files:
        if f.run is not None and f.run in ready_runs:
            by_run.setdefault(f.run, []).append(f)
    return {run: plan_merges(group, policy, 0.0, idle=True) for run, group in sorted(by_run.items())}


def _closed_reason(group: list[Candidate], policy: MergePolicy) -> str:
    return _limit_reason(group, policy) or "full: the next file would go above the maximum size or events"


def _limit_reason(group: list[Candidate], policy: MergePolicy) -> str | None:
    if sum(c.size for c in group) >= policy.min_size_bytes:
        return "minimum size reached"
    if sum(c.events for c in group) >= policy.max_events:
        return "maximum events reached"
    return None


def _open_reason(group: list[Candidate], policy: MergePolicy, now: float, idle: bool) -> str | None:
    reason = _limit_reason(group, policy)
    if reason:
        return reason
    if now - min(c.created_at for c in group) >= policy.max_wait_s:
        return f"oldest file waited {policy.max_wait_s:.0f}s"
    if idle:
        return "the request has no live production job: last files"
    return None


# -- remerge by hand -------------------------------------------------------------------------------

RELEASABLE = frozenset({states.PAUSED, states.EXHAUSTED, states.KILLED})


@dataclass(frozen=True)
class Remerged:
    merge_job_ids: list[int]  # merge jobs whose inputs were given back
    files: int  # files back in state "new"


def remerge(conn: sa.Connection, agent: str, dataset_id: int) -> Remerged:
    """Give the inputs of the dataset's paused, exhausted or killed merge jobs back (-> "new").

    Those merge jobs are killed first (a paused or exhausted job could otherwise be resubmitted
    later with no inputs). The next MergeSensor grouping merges the files again; the merge job
    names of the new groups differ from the old ones.
    """
    store.lock_dataset(conn, dataset_id)  # no grouping of this dataset meanwhile
    failed = store.merge_jobs_in(conn, agent, dataset_id, RELEASABLE)
    store.transition(conn, [j.id for j in failed if j.state != states.KILLED], states.KILLED,
                     "remerge by hand: inputs given back to the dataset")
    ids = [j.id for j in failed]
    return Remerged(ids, store.release_merge_inputs(conn, ids))
