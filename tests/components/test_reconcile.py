"""Reconciliation: each component re-derives from the database the work a lost message carried.

On SQLite and MariaDB, with the components driven directly: work older than `reconcile_s` is
done as its message would have done it; fresher work (its message may be in flight) is left to
the message; a second pass changes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from prodagent.components.error_handler import ErrorHandler
from prodagent.components.job_creator import JobCreator
from prodagent.components.job_submitter import JobSubmitter
from prodagent.components.merge_sensor import MergeSensor
from prodagent.db.schema import pa_allocation, pa_job
from prodagent.jobs import allocations, states, store
from tests.components.merge_env import (  # noqa: F401
    REQUEST,
    MergeWorld,
    Produced,
    merge_template,
    produced_files,
)

OLD = 3600.0  # seconds: far beyond any reconcile_s



def add_jobs(world: MergeWorld, n: int, allocation_id: str = "a1") -> list[int]:
    """Production jobs of the test request in state `created`, with work areas of their own."""
    def work(conn: sa.Connection) -> list[int]:
        rows = []
        for k in range(n):
            name = f"mt-r{REQUEST}-{allocation_id}-x{time.monotonic_ns()}-{k}"
            rows.append({"agent": "mt", "name": name, "job_type": "production", "allocation_id": allocation_id,
                         "request_id": REQUEST, "dataset_id": world.dataset_id, "first_event": 1 + 50 * k,
                         "n_events": 50, "seed": 100 + k, "run": 1, "job_index": k,
                         "workdir": str(world.layout.job_dir(REQUEST, name))})
        return store.insert_jobs(conn, rows, reason="test")
    return world.tx(work)


def move(world: MergeWorld, ids: list[int], *steps: str, **fields: Any) -> None:
    def work(conn: sa.Connection) -> None:
        for step in steps:
            assert store.transition(conn, ids, step, "test", **fields).ids == ids
    world.tx(work)


def age(world: MergeWorld, ids: list[int], seconds: float = OLD) -> None:
    """Make the jobs' last change `seconds` old, as if their message had been lost that long ago."""
    world.tx(lambda conn: conn.execute(pa_job.update().where(pa_job.c.id.in_(ids))
                                       .values(updated_at=time.time() - seconds)))


def test_error_handler_decides_failed_jobs_whose_job_failed_was_lost(world: MergeWorld) -> None:
    stale, fresh = add_jobs(world, 2)
    move(world, [stale, fresh], states.SUBMITTED, states.JOBFAILED, exit_code=1, error_reason="exit 1")
    age(world, [stale])
    handler = world.component(ErrorHandler)

    out = world.call(handler.reconcile)

    assert [(m.msg_type, m.payload["job_ids"]) for m in out] == [("RetryJob", [stale])]
    assert world.job(stale).state == states.COOLOFF
    assert world.job(fresh).state == states.JOBFAILED  # its JobFailed may be in flight: not touched
    assert world.call(handler.reconcile) == []  # decided once


def test_job_creator_retries_cooloffs_whose_retry_job_was_lost(world: MergeWorld) -> None:
    over, cooling = add_jobs(world, 2)
    move(world, [over, cooling], states.SUBMITTED, states.JOBFAILED, states.COOLOFF)
    age(world, [over])
    creator = world.component(JobCreator)

    out = world.call(creator.reconcile)

    assert [(m.msg_type, m.payload) for m in out] == [("JobCreated", {"job_ids": [over]})]
    retried = world.job(over)
    assert (retried.state, retried.retry) == (states.CREATED, 1)
    assert (Path(retried.workdir) / "attempt-1" / "job.json").is_file()
    assert world.job(cooling).state == states.COOLOFF
    assert world.call(creator.reconcile) == []


def test_job_creator_cuts_allocations_whose_allocation_acquired_was_lost(world: MergeWorld) -> None:
    now = time.time()
    for alloc_id, acquired_at in (("7.1", now - OLD), ("8.1", now), ("9.1", now - OLD)):
        world.tx(lambda conn, a=alloc_id, t=acquired_at: conn.execute(pa_allocation.insert().values(
            id=a, pm_id=int(a.split(".")[0]), lease_epoch=1, agent="mt", request_id=REQUEST,
            request_name="merge-test", lease_token="t", lease_expires_at=now + OLD,
            workflow=json.dumps(world.workflow), first_event=1, n_events=100, run=1, seed=5, job_index=0,
            state=allocations.ACQUIRED, acquired_at=t, updated_at=t)))
    world.service.send("AllocationAcquired", {"allocation_ids": ["9.1"]})  # late, not lost: left to it
    creator = world.component(JobCreator)

    out = world.call(creator.reconcile)

    assert not [j for j in world.jobs("production") if j.allocation_id == "9.1"]
    created = [j for j in world.jobs("production") if j.allocation_id == "7.1"]
    assert len(created) == 2 and {j.state for j in created} == {states.CREATED}
    assert [(m.msg_type, sorted(m.payload["job_ids"])) for m in out] == [("JobCreated", [j.id for j in created])]
    held = world.tx(lambda conn: {a.id: a.state for a in store.allocations(conn, ["7.1", "8.1", "9.1"])})
    assert held == {"7.1": allocations.ACTIVE, "8.1": allocations.ACQUIRED, "9.1": allocations.ACQUIRED}
    assert world.call(creator.reconcile) == []


def test_job_submitter_kills_live_jobs_of_allocations_given_up(world: MergeWorld) -> None:
    now = time.time()
    world.tx(lambda conn: conn.execute(pa_allocation.insert().values(
        id="9.1", pm_id=9, lease_epoch=1, agent="mt", request_id=REQUEST, request_name="merge-test",
        lease_token="t", lease_expires_at=now - 1, workflow=json.dumps(world.workflow),
        state=allocations.LOST, acquired_at=now - OLD, updated_at=now)))
    doomed = add_jobs(world, 2, allocation_id="9.1")
    kept = add_jobs(world, 1)
    submitter = world.component(JobSubmitter)
    try:
        world.call(submitter.reconcile)
        world.call(submitter.reconcile)  # idempotent
    finally:
        submitter.teardown()

    assert {world.job(j).state for j in doomed} == {states.KILLED}
    assert world.job(kept[0]).state == states.CREATED


def test_merge_sensor_judges_merges_whose_job_success_was_lost(
    world: MergeWorld, produced_files: list[Produced],  # noqa: F811
) -> None:
    sensor = world.component(MergeSensor)
    world.call(sensor.on_success, {"job_ids": world.add_production(produced_files)})
    (merge,) = world.jobs("merge")
    world.replay_merge(merge.id, merge_template(produced_files))
    assert world.call(sensor.reconcile) == []  # just finished: its JobSuccess may be in flight

    age(world, [merge.id])
    out = world.call(sensor.reconcile)

    assert [m.msg_type for m in out] == ["MergeAccepted"]
    assert {f.state for f in world.files(kind="unmerged")} == {"merged"}
    assert world.call(sensor.reconcile) == []  # judged once
    # Accepted, it waits in success for Cleanup; reconciliation no longer reads it.
    assert world.job(merge.id).state == states.SUCCESS
    assert world.tx(lambda c: store.unjudged_merges(c, "mt", time.time() + OLD)) == []
