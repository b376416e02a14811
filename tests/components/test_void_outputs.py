"""Outputs of lost work are voided and deleted: Cleanup's reconciliation, on SQLite and MariaDB
with real files.

An allocation that ended without a completion with ProdManager (lost, recalled, failed) leaves
produced unmerged files that are never merged: they become `void`, are deleted from disk and end
`cleaned`, their job's work area archived and removed. Files of a done allocation (still to be
merged) and of an allocation still held are left exactly as they are.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from prodagent.components.cleanup import Cleanup
from prodagent.db.schema import pa_allocation, pa_job
from prodagent.errors import IllegalTransition
from prodagent.jobs import allocations, file_states, states, store
from tests.components.merge_env import (  # noqa: F401
    REQUEST,
    MergeWorld,
    Produced,
    produced_files,
)


def production_of(world: MergeWorld, made: list[Produced], allocation_id: str, alloc_state: str) -> list[int]:
    """Finished production jobs with their unmerged files, moved to an allocation in `alloc_state`."""
    now = time.time()
    world.tx(lambda conn: conn.execute(pa_allocation.insert().values(
        id=allocation_id, pm_id=int(allocation_id.split(".")[0]), lease_epoch=1, agent="mt",
        request_id=REQUEST, request_name="merge-test", lease_token="t", lease_expires_at=now + 60,
        workflow=json.dumps(world.workflow), state=alloc_state, acquired_at=now, updated_at=now)))
    ids = world.add_production(made)
    world.tx(lambda conn: conn.execute(pa_job.update().where(pa_job.c.id.in_(ids)).values(allocation_id=allocation_id)))
    return ids


def files_of(world: MergeWorld, job_ids: list[int]) -> list[sa.Row]:
    return world.tx(lambda conn: store.files_of_jobs(conn, job_ids))


@pytest.mark.parametrize("ended", [allocations.LOST, allocations.RECALLED, allocations.FAILED])
def test_outputs_of_an_allocation_ended_without_completion_are_deleted(
    world: MergeWorld, produced_files: list[Produced], ended: str,  # noqa: F811
) -> None:
    done = world.add_production(produced_files[:1])  # allocation a1: done with ProdManager
    held = production_of(world, produced_files[1:2], "10.1", allocations.ACTIVE)
    lost = production_of(world, produced_files[2:], "9.1", ended)
    (lost_file,) = files_of(world, lost)
    (lost_job,) = [world.job(i) for i in lost]
    assert Path(lost_file.pfn).is_file() and Path(lost_job.workdir).is_dir()
    kept = {f.id: f.pfn for f in files_of(world, done + held)}
    cleanup = world.component(Cleanup)

    world.call(cleanup.reconcile)

    (after,) = files_of(world, lost)
    assert after.state == file_states.CLEANED and not Path(lost_file.pfn).exists()
    assert world.job(lost_job.id).state == states.CLEANED and not Path(lost_job.workdir).exists()
    assert cleanup.layout.log_archive(REQUEST, lost_job.name).is_file()  # the logs are kept
    # A done allocation's output waits for its merge; a held one's may still be completed.
    assert {f.id: (f.state, Path(f.pfn).is_file()) for f in files_of(world, done + held)} == {
        i: (file_states.NEW, True) for i in kept
    }
    assert {world.job(i).state for i in done + held} == {states.SUCCESS}

    world.call(cleanup.reconcile)  # a second pass changes nothing
    assert [f.state for f in files_of(world, done + held + lost)] == [file_states.NEW] * 2 + [file_states.CLEANED]

    # Only the done allocation's file may be merged.
    mergeable = world.tx(lambda conn: [r.id for r in store.mergeable_files(conn, world.dataset_id)])
    assert mergeable == [f.id for f in files_of(world, done)]

def test_a_void_file_of_a_job_still_live_waits(world: MergeWorld, produced_files: list[Produced]) -> None:  # noqa: F811
    """Files are voided only once their job is no longer live (a job not yet ended may still be killed)."""
    lost = production_of(world, produced_files[:1], "9.1", allocations.LOST)
    # As if its job were still live (e.g. in a retry's cool-off): not touched yet.
    world.tx(lambda conn: conn.execute(pa_job.update().where(pa_job.c.id.in_(lost)).values(state=states.COOLOFF)))
    (f,) = files_of(world, lost)
    cleanup = world.component(Cleanup)

    world.call(cleanup.reconcile)
    assert files_of(world, lost)[0].state == file_states.NEW and Path(f.pfn).is_file()

    world.tx(lambda conn: store.kill_jobs(conn, lost, "its allocation was given up"))
    world.call(cleanup.reconcile)
    assert files_of(world, lost)[0].state == file_states.CLEANED and not Path(f.pfn).exists()


def test_the_file_state_table_has_void() -> None:
    file_states.check(file_states.NEW, file_states.VOID)
    file_states.check(file_states.VOID, file_states.CLEANED)
    for bad in (file_states.MERGING, file_states.MERGED, file_states.NEW):
        with pytest.raises(IllegalTransition):
            file_states.check(file_states.VOID, bad)
