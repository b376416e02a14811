"""Slurm state mapping and squeue parsing, without a cluster."""

from __future__ import annotations

import pytest

from prodagent.batch.base import BatchState
from prodagent.batch.slurm_states import (
    SlurmRow,
    parse_duration,
    parse_squeue,
    status_from_row,
)


def row(state: str, reason: str = "None", raw_exit: int = 0, task: int | None = 3) -> SlurmRow:
    return SlurmRow("41", task, "57", "prodagent-x", state, reason, raw_exit, 12.0, "debug")


def test_parse_squeue_lines_of_arrays_and_plain_jobs() -> None:
    text = (
        "41                  |3                   |57                  |prodagent-x         |"
        "FAILED              |NonZeroExitCode     |768                 |0:01                |debug |\n"
        "44|N/A|44|wrap|CANCELLED by 0|None|15|1-02:03:04|debug|\n"
        "garbage\n"
    )
    first, second = parse_squeue(text)
    assert (first.batch_id, first.state, first.raw_exit, first.time_used_s) == (
        "41_3",
        "FAILED",
        768,
        1.0,
    )
    assert (second.batch_id, second.task_id, second.state) == ("44", None, "CANCELLED")
    assert second.time_used_s == 86400 + 2 * 3600 + 3 * 60 + 4


@pytest.mark.parametrize(
    ("text", "seconds"), [("0:00", 0.0), ("12:34", 754.0), ("2-00:00:01", 172801.0), ("N/A", None)]
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "state", ["NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "PREEMPTED", "CANCELLED", "BOOT_FAIL"]
)
def test_batch_failure_states_become_error_classes(state: str) -> None:
    status = status_from_row("j", row(state))
    assert (status.state, status.error_class) == (BatchState.FAILED, state)


def test_nonzero_exit_is_done_with_the_payload_code() -> None:
    status = status_from_row("j", row("FAILED", "NonZeroExitCode", 3 << 8))
    assert (status.state, status.exit_code, status.error_class) == (BatchState.DONE, 3, None)


def test_runner_result_supplies_usage_and_exit_code() -> None:
    runner = {"exit_code": 0, "wall_s": 2.5, "cpu_s": 1.25, "max_rss_mb": 42.0}
    status = status_from_row("j", row("COMPLETED"), runner=runner)
    assert (status.wall_s, status.cpu_s, status.max_rss_mb) == (2.5, 1.25, 42.0)


def test_over_memory_kill_without_cgroups_is_out_of_memory() -> None:
    output = "slurmstepd-vm: error: Exceeded job memory limit\n"
    status = status_from_row("j", row("FAILED", "JobLaunchFailure", 9), output)
    assert (status.state, status.error_class) == (BatchState.FAILED, "OUT_OF_MEMORY")
    launch = status_from_row("j", row("FAILED", "JobLaunchFailure", 53), "")
    assert launch.error_class == "LAUNCH_FAILED"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("PENDING", BatchState.QUEUED),
        ("REQUEUED", BatchState.QUEUED),
        ("RUNNING", BatchState.RUNNING),
        ("COMPLETING", BatchState.RUNNING),
    ],
)
def test_active_states(state: str, expected: BatchState) -> None:
    assert status_from_row("j", row(state)).state is expected


def test_excluded_nodes_go_to_sbatch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from prodagent.batch.slurm import SlurmOptions, SlurmPlugin

    plugin = SlurmPlugin(SlurmOptions(), tmp_path)
    args = plugin._sbatch_args("t", 2, "debug", 100, 60, ("wn1", "wn2"))
    assert "--exclude=wn1,wn2" in args and "--partition=debug" in args
    assert not any(a.startswith("--exclude") for a in plugin._sbatch_args("t", 2, None, 100, 60))
