"""JobTracker and JobSubmitter read, then call the batch system with no transaction open, then record."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from prodagent.batch.base import BatchJob, BatchStatus, SiteSlots
from prodagent.batch.emulator import JobEmulator, JobEmulatorOptions
from prodagent.components.job_submitter import JobSubmitter, batch_job
from prodagent.components.job_tracker import JobTracker
from prodagent.components.resource_monitor import ResourceMonitor
from prodagent.jobs import states, store
from prodagent.runtime.component import Component
from tests.components.merge_env import MergeWorld
from tests.components.test_reconcile import add_jobs, move


class WatchedEmulator(JobEmulator):
    """The JobEmulator, noting how many database connections were in use at each query."""

    def __init__(self, options: JobEmulatorOptions, workdir: Path, engine) -> None:  # type: ignore[no-untyped-def]
        super().__init__(options, workdir)
        self.engine = engine
        self.in_use_at_query: list[int] = []

    def query(self, job_ids: Iterable[str]) -> dict[str, BatchStatus]:
        self.in_use_at_query.append(self.engine.pool.checkedout())
        return super().query(job_ids)

    def capacity(self) -> list[SiteSlots]:
        self.in_use_at_query.append(self.engine.pool.checkedout())
        return super().capacity()

    def find_submitted(self, job_ids: Iterable[str]) -> dict[str, str]:
        self.in_use_at_query.append(self.engine.pool.checkedout())
        return super().find_submitted(job_ids)

    def submit(self, jobs: Sequence[BatchJob]) -> dict[str, str]:
        self.in_use_at_query.append(self.engine.pool.checkedout())
        return super().submit(jobs)


def test_the_batch_query_runs_with_no_transaction_open(world: MergeWorld, tmp_path: Path) -> None:
    assert JobTracker.tick_in_transaction is False and Component.tick_in_transaction is True
    ids = add_jobs(world, 3)
    move(world, ids, states.SUBMITTED)
    plugin = WatchedEmulator(JobEmulatorOptions(duration={"value_s": 0.0}, outcomes=[]), tmp_path / "emu",
                             world.service.engine)
    jobs = [world.job(i) for i in ids]
    assert len(plugin.submit([batch_job(j, "emulator", sys.executable) for j in jobs])) == 3
    plugin.in_use_at_query.clear()
    tracker = world.component(JobTracker)
    tracker.plugin = plugin
    try:
        tracker.tick(None)  # as the runner calls it: no transaction given
    finally:
        tracker.teardown()

    assert plugin.in_use_at_query == [0]  # no connection held, so no transaction, while the batch was asked
    assert {world.job(i).state for i in ids} == {states.SUCCESS}
    assert world.messages("JobSuccess", component="MergeSensor") == [{"job_ids": ids}]
    assert len(world.files(kind="unmerged")) == 3  # outputs recorded in the same short transaction


def test_submitting_runs_with_no_transaction_open(world: MergeWorld, tmp_path: Path) -> None:
    assert JobSubmitter.tick_in_transaction is False
    ids = add_jobs(world, 3)
    submitter = world.component(JobSubmitter)
    submitter.plugin = WatchedEmulator(JobEmulatorOptions(duration={"value_s": 60.0}, slots=2), tmp_path / "emu",
                                       world.service.engine)
    try:
        assert world.call(submitter.on_created, {"job_ids": ids}) == []  # only asks for a tick
        assert submitter.tick_now and {world.job(i).state for i in ids} == {states.CREATED}
        submitter.tick(None)  # as the runner calls it
        submitter.tick(None)  # nothing left to submit: the batch system is not asked again
    finally:
        submitter.teardown()

    # capacity, find_submitted, then submit; never with a connection (so a transaction) held.
    assert submitter.plugin.in_use_at_query == [0, 0, 0]
    jobs = [world.job(i) for i in ids]
    # Room is the emulator's 2 slots plus 1.0 queued per slot: all three go, each recorded with its batch id.
    assert [j.state for j in jobs] == [states.SUBMITTED] * 3
    assert all(j.batch_id and j.site == "emulator" for j in jobs)


def test_resource_figures_are_read_with_no_transaction_open(world: MergeWorld, tmp_path: Path) -> None:
    monitor = world.component(ResourceMonitor)
    monitor.plugin = WatchedEmulator(JobEmulatorOptions(slots=7), tmp_path / "emu", world.service.engine)
    try:
        monitor.tick(None)
    finally:
        monitor.teardown()
    assert monitor.plugin.in_use_at_query == [0]
    (site,) = world.tx(lambda conn: store.sites(conn, "mt"))
    assert (site.site, site.slots) == ("emulator", 7)
    assert monitor.last_free == {"emulator": 7}
