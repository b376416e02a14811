"""Cleanup after accepted merges, on SQLite and MariaDB with real files; and a full merge+cleanup
through the message service."""

from __future__ import annotations

import tarfile
from pathlib import Path

from prodagent.components.cleanup import Cleanup, WorkArea, write_archive
from prodagent.components.merge_sensor import MergeSensor
from prodagent.db.schema import ms_message
from prodagent.jobs.layout import Layout
from prodagent.runtime.component import Context
from tests.components.merge_env import (  # noqa: F401
    MergeWorld,
    Produced,
    accepted_merge,
    produced_files,
    unmerged_files_on_disk,
)


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_cleanup_removes_unmerged_files_and_work_areas_and_keeps_the_logs(
    world: MergeWorld, produced_files: list[Produced],  # noqa: F811
) -> None:
    merge, accepted = accepted_merge(world, produced_files, replay=True)
    inputs = world.files(kind="unmerged")
    jobs = world.jobs()
    assert {j.state for j in jobs} == {"success"}
    file_bytes = sum(Path(f.pfn).stat().st_size for f in inputs)
    area_bytes = sum(area.size for j in jobs if (area := WorkArea.read(Path(j.workdir))))
    assert file_bytes > 0 and area_bytes > 0

    cleanup = world.component(Cleanup)
    freed = world.tx(lambda conn: cleanup.clean_after(Context(conn), merge.id))

    assert (freed.files, freed.file_bytes, freed.work_area_bytes, freed.jobs) == (3, file_bytes, area_bytes, 4)
    assert freed.bytes == file_bytes + area_bytes
    assert [f.state for f in world.files(kind="unmerged")] == ["cleaned"] * 3
    assert not any(Path(f.pfn).exists() for f in inputs)
    assert unmerged_files_on_disk(world) == []
    (merged,) = world.files(kind="merged")
    assert merged.state == "final" and Path(merged.pfn).is_file()
    assert {j.state for j in world.jobs()} == {"cleaned"}
    for job in jobs:
        assert not Path(job.workdir).exists()
        members = archive_members(world.layout.log_archive(job.request_id, job.name))
        assert {f"{job.name}/attempt-0/{n}" for n in ("job.json", "job.log", "report.json")} <= set(members)
        assert b"End of Job" in members[f"{job.name}/attempt-0/job.log"]
        assert not any(name.endswith(".root") for name in members)
    # Second delivery: nothing to do, nothing published, nothing changed.
    before = (world.files(), world.jobs())
    assert world.call(world.component(Cleanup).on_merge_accepted, accepted) == []
    assert (world.files(), world.jobs()) == before


def test_cleanup_finishes_what_an_interrupted_delivery_began(
    world: MergeWorld, produced_files: list[Produced],  # noqa: F811
) -> None:
    merge, accepted = accepted_merge(world, produced_files, replay=True)
    inputs = world.files(kind="unmerged")
    first = world.jobs("production")[0]
    # The crashed delivery removed one file, archived the first job and began removing its area.
    Path(inputs[0].pfn).unlink()
    archive = world.layout.log_archive(first.request_id, first.name)
    area = WorkArea.read(Path(first.workdir))
    assert area is not None
    write_archive(area, archive)
    written = archive.read_bytes()
    (Layout.attempt_dir(first.workdir, 0) / "job.log").unlink()

    cleanup = world.component(Cleanup)
    freed = world.tx(lambda conn: cleanup.clean_after(Context(conn), merge.id))

    assert freed.files == 3 and freed.jobs == 4
    assert freed.file_bytes == inputs[1].size + inputs[2].size  # the gone file freed nothing now
    assert archive.read_bytes() == written  # the whole archive is kept, not rewritten from half an area
    assert f"{first.name}/attempt-0/job.log" in archive_members(archive)
    assert unmerged_files_on_disk(world) == []
    assert {j.state for j in world.jobs()} == {"cleaned"}
    assert not Path(merge.workdir).exists()


def test_full_merge_and_cleanup_through_messages(world: MergeWorld, produced_files: list[Produced]) -> None:  # noqa: F811
    """JobSuccess -> MergeSensor -> (merge job runs) -> JobSuccess -> MergeAccepted -> Cleanup."""
    service = world.service
    sensor, cleanup = world.component(MergeSensor), world.component(Cleanup)
    pids = {c.name: service.register(c.name) for c in (sensor, cleanup)}

    def deliver(component: MergeSensor | Cleanup) -> int:
        return service.consume(component.name, pids[component.name], component.dispatch).handled

    prod = world.add_production(produced_files)
    service.send("JobSuccess", {"job_ids": prod})
    assert deliver(sensor) == 1
    (merge,) = world.jobs("merge")
    assert world.messages("JobCreated", component="JobSubmitter") == [{"job_ids": [merge.id]}]
    world.run_merge(merge.id)
    service.send("JobSuccess", {"job_ids": [merge.id]})
    assert deliver(sensor) == 1
    assert deliver(cleanup) == 1
    assert deliver(cleanup) == 0 and deliver(sensor) == 0  # queues drained
    assert unmerged_files_on_disk(world) == []
    assert not list((world.config.workdir / "jobs").rglob("*.log"))
    assert {j.state for j in world.jobs()} == {"cleaned"}
    assert [f.state for f in world.files()] == ["cleaned"] * len(produced_files) + ["final"]
    archives = list((world.config.workdir / "logs" / "archive").rglob("*.tar.gz"))
    assert len(archives) == len(produced_files) + 1


def test_reconcile_cleans_after_a_lost_merge_accepted(
    world: MergeWorld, produced_files: list[Produced],  # noqa: F811
) -> None:
    merge, _accepted = accepted_merge(world, produced_files)
    late = world.component(Cleanup)
    world.call(late.reconcile)
    world.call(late.reconcile)
    assert late.backlog == []  # seen twice, but its MergeAccepted is still queued: late, not lost
    assert world.messages("MergeAccepted", component="Cleanup") != []
    world.tx(lambda conn: conn.execute(ms_message.delete().where(ms_message.c.component == "Cleanup",
                                                                 ms_message.c.msg_type == "MergeAccepted")))
    cleanup = world.component(Cleanup)
    assert world.messages("MergeAccepted") != []  # what the handler would have received; lost
    assert cleanup.reconcile_interval_s == 60.0  # the default, from CleanupSettings

    assert world.call(cleanup.reconcile) == []
    assert cleanup.backlog == []  # seen once: its MergeAccepted may merely be queued
    assert [f.state for f in world.files(kind="unmerged")] == ["merged"] * 3
    world.call(cleanup.reconcile)
    assert cleanup.backlog == [merge.id] and cleanup.tick_now  # seen twice: the tick cleans it
    cleanup.tick(None)

    assert [f.state for f in world.files(kind="unmerged")] == ["cleaned"] * 3
    assert unmerged_files_on_disk(world) == []
    assert {j.state for j in world.jobs()} == {"cleaned"}
    assert not Path(merge.workdir).exists()
    # Nothing left: a second pass changes nothing.
    before = (world.files(), world.jobs())
    world.call(cleanup.reconcile)
    cleanup.tick(None)
    assert (world.files(), world.jobs()) == before
