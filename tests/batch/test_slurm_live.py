"""Slurm plugin against the live single-node cluster of scripts/slurm/.

Slurm checks time limits about every 30 s and its smallest limit is one minute, so the TIMEOUT
job is submitted by a module fixture when the first test starts and checked by the last test:
its wait overlaps with the other tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prodagent.batch.base import BatchJob, BatchState
from prodagent.batch.registry import load_plugin
from prodagent.batch.slurm import SlurmPlugin
from tests.batch.helpers import wait_final, wait_state

pytestmark = pytest.mark.usefixtures("slurm_cluster")

HOG = "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"


def make(workdir: Path, **options: object) -> SlurmPlugin:
    plugin = load_plugin("slurm", dict(options), workdir)
    assert isinstance(plugin, SlurmPlugin)
    return plugin


def sh(job_id: str, base: Path, script: str, **kw: object) -> BatchJob:
    return BatchJob(job_id, ["sh", "-c", script], base / "jobs" / job_id, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def timeout_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SlurmPlugin, str]]:
    base = tmp_path_factory.mktemp("slurm-timeout")
    plugin = make(base)
    plugin.submit([sh("too-slow", base, "sleep 300", time_s=60, memory_mb=100)])
    yield plugin, "too-slow"
    plugin.kill(["too-slow"])


def test_bulk_batch_completes_with_exit_codes_and_usage(
    tmp_path: Path, timeout_job: tuple[SlurmPlugin, str]
) -> None:
    plugin = make(tmp_path)
    jobs = [
        sh(f"bulk-{i}", tmp_path, f"echo job {i}; exit {i % 3}", memory_mb=200) for i in range(24)
    ]
    jobs.append(sh("other-limits", tmp_path, "echo different memory", memory_mb=300))

    accepted = plugin.submit(jobs)

    assert set(accepted) == {j.job_id for j in jobs}
    assert len({b.split("_")[0] for b in accepted.values()}) == 2  # one array per limit group
    status = wait_final(plugin, accepted, timeout=90)
    assert {s.state for s in status.values()} == {BatchState.DONE}
    expected = {f"bulk-{i}": i % 3 for i in range(24)} | {"other-limits": 0}
    assert {j: s.exit_code for j, s in status.items()} == expected
    assert all(s.wall_s is not None and s.cpu_s is not None for s in status.values())
    assert (tmp_path / "jobs" / "bulk-7" / "batch.out").read_text() == "job 7\n"


def test_environment_reaches_the_job(tmp_path: Path) -> None:
    plugin = make(tmp_path)
    plugin.submit([sh("env", tmp_path, 'echo "$COLOUR"; exit 4', env={"COLOUR": "blue green"})])
    status = wait_final(plugin, ["env"], timeout=60)["env"]
    assert (status.state, status.exit_code) == (BatchState.DONE, 4)
    assert (tmp_path / "jobs" / "env" / "batch.out").read_text() == "blue green\n"


def test_job_over_its_memory_is_out_of_memory(tmp_path: Path) -> None:
    plugin = make(tmp_path)
    job = BatchJob("hog", ["python3", "-c", HOG], tmp_path / "jobs" / "hog", memory_mb=100)
    plugin.submit([job])
    status = wait_final(plugin, ["hog"], timeout=90)["hog"]
    assert status.state is BatchState.FAILED
    assert status.error_class == "OUT_OF_MEMORY"


def test_cancelled_job(tmp_path: Path) -> None:
    plugin = make(tmp_path)
    plugin.submit([sh("cancel-me", tmp_path, "sleep 120", memory_mb=100)])
    wait_state(plugin, "cancel-me", {BatchState.RUNNING}, timeout=60)
    plugin.kill(["cancel-me", "never-submitted"])
    status = wait_final(plugin, ["cancel-me"], timeout=60)["cancel-me"]
    assert (status.state, status.error_class) == (BatchState.FAILED, "CANCELLED")


def test_new_instance_finds_submitted_jobs_instead_of_resubmitting(tmp_path: Path) -> None:
    first = make(tmp_path)
    accepted = first.submit(
        [sh(f"crash-{i}", tmp_path, "sleep 1", memory_mb=100) for i in range(5)]
    )
    # The agent died right after sbatch, before the array id reached the disk.
    for id_file in (tmp_path / "slurm" / "batches").glob("*.id"):
        id_file.unlink()

    second = make(tmp_path)
    found = second.find_submitted([*accepted, "crash-never"])

    assert found == accepted
    status = wait_final(second, accepted, timeout=60)
    assert {s.state for s in status.values()} == {BatchState.DONE}
    assert second.query(["crash-never"])["crash-never"].state is BatchState.LOST


def test_job_slurm_does_not_know_is_lost(tmp_path: Path) -> None:
    plugin = make(tmp_path)
    batches = tmp_path / "slurm" / "batches"
    (batches / "0-gone.json").write_text('{"job_ids": ["ghost"], "submitted": 0}')
    (batches / "0-gone.id").write_text("999999")
    status = plugin.query(["ghost"])["ghost"]
    assert status.state is BatchState.LOST
    assert status.batch_id == "999999_0"


def test_capacity_reports_the_partition(tmp_path: Path) -> None:
    plugin = make(tmp_path)
    slots = plugin.capacity()
    assert slots and all(s.slots >= 1 for s in slots)


def test_timeout_job_is_classified(timeout_job: tuple[SlurmPlugin, str]) -> None:
    plugin, job_id = timeout_job
    status = wait_final(plugin, [job_id], timeout=150, poll=1.0)[job_id]
    assert (status.state, status.error_class) == (BatchState.FAILED, "TIMEOUT")
