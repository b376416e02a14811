"""LocalExecutor: real child processes, state on disk, survival of killed agent processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prodagent.batch.base import BatchJob, BatchState
from prodagent.batch.local import LocalExecutor
from prodagent.batch.local_spool import process_alive
from prodagent.batch.registry import load_plugin
from tests.agent_helpers import wait_until
from tests.batch.helpers import wait_final, wait_state


def make(workdir: Path, **options: object) -> LocalExecutor:
    plugin = load_plugin("local", dict(options), workdir)
    assert isinstance(plugin, LocalExecutor)
    return plugin


def sh(job_id: str, base: Path, script: str, **kw: object) -> BatchJob:
    return BatchJob(job_id, ["sh", "-c", script], base / "jobs" / job_id, **kw)  # type: ignore[arg-type]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = level = 0
    for _, step in events:
        level += step
        best = max(best, level)
    return best


def test_bulk_jobs_respect_slots_and_report_exit_codes(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=3)
    stamp = "python3 -c 'import time; print(time.time())'"
    jobs = [
        sh(f"job-{i}", tmp_path, f"{stamp} > start; sleep 0.2; {stamp} > end; exit {i % 4}")
        for i in range(20)
    ]
    accepted = plugin.submit(jobs)
    assert set(accepted) == {j.job_id for j in jobs}
    assert len(set(accepted.values())) == 20

    status = wait_final(plugin, accepted)

    assert {s.state for s in status.values()} == {BatchState.DONE}
    assert {j: s.exit_code for j, s in status.items()} == {f"job-{i}": i % 4 for i in range(20)}
    assert all(s.wall_s is not None and s.cpu_s is not None for s in status.values())
    intervals = [
        (float((j.workdir / "start").read_text()), float((j.workdir / "end").read_text()))
        for j in jobs
    ]
    assert max_overlap(intervals) <= 3
    assert plugin.capacity()[0].running == 0


def test_stdout_stderr_env_and_workdir(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=2)
    job = sh("io", tmp_path, 'echo "out $GREETING"; echo err >&2; pwd', env={"GREETING": "hi"})
    plugin.submit([job])
    assert wait_final(plugin, ["io"])["io"].exit_code == 0
    assert (job.workdir / "batch.out").read_text().splitlines() == ["out hi", str(job.workdir)]
    assert (job.workdir / "batch.err").read_text() == "err\n"


def wait_started(plugin: LocalExecutor, job_id: str) -> dict[str, float]:
    """The launcher's record once the payload process exists."""
    wait_state(plugin, job_id, {BatchState.RUNNING})
    started_file = plugin.spool.started_path(job_id)
    deadline = time.monotonic() + 10
    while not started_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return json.loads(started_file.read_text())


def test_kill_running_and_queued_jobs(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=1)
    plugin.submit([sh("long", tmp_path, "sleep 60"), sh("waiting", tmp_path, "true")])
    wait_started(plugin, "long")
    assert plugin.query(["waiting"])["waiting"].state is BatchState.QUEUED

    plugin.kill(["long", "waiting", "never-submitted"])
    status = wait_final(plugin, ["long", "waiting"], timeout=20)

    assert status["long"].state is BatchState.FAILED
    assert status["long"].error_class == "CANCELLED"
    assert status["long"].exit_code == 128 + signal.SIGTERM
    assert status["waiting"].error_class == "CANCELLED"


def test_time_and_memory_limits(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=2, enforce_memory=True, kill_grace_s=1)
    hog = "python3 -c 'import time; x = bytearray(300 * 2**20); x[::4096] = b\"1\" * len(x[::4096]); time.sleep(30)'"
    plugin.submit(
        [
            sh("slow", tmp_path, "sleep 30", time_s=1),
            sh("hog", tmp_path, hog, memory_mb=100),
        ]
    )
    status = wait_final(plugin, ["slow", "hog"], timeout=30)
    assert (status["slow"].state, status["slow"].error_class) == (BatchState.FAILED, "TIMEOUT")
    assert (status["hog"].state, status["hog"].error_class) == (BatchState.FAILED, "OUT_OF_MEMORY")


def test_killed_launcher_makes_the_job_lost(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=2)
    plugin.submit([sh("victim", tmp_path, "sleep 60")])
    started = wait_started(plugin, "victim")

    os.kill(started["launcher_pid"], signal.SIGKILL)
    status = wait_final(plugin, ["victim"], timeout=10)["victim"]

    assert status.state is BatchState.LOST
    assert "launcher died" in (status.reason or "")
    assert plugin.capacity()[0].running == 0
    # Killed with it (SIGKILL is delivered asynchronously: allow it a moment).
    wait_until(lambda: not process_alive(int(started["pid"]), started["create_time"]), 5, 0.02,
               "the payload killed with its launcher")


SUBMIT_AND_DIE = """
import os, signal, sys
from pathlib import Path
from prodagent.batch.base import BatchJob
from prodagent.batch.registry import load_plugin
base = Path(sys.argv[1])
plugin = load_plugin("local", {"slots": 2}, base)
plugin.submit([BatchJob(f"orphan-{i}", ["sh", "-c", f"sleep 0.3; exit {i}"], base / f"o{i}")
               for i in range(6)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_new_instance_finds_jobs_of_a_killed_submitter(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SUBMIT_AND_DIE, str(tmp_path)], check=False)
    assert proc.returncode == -signal.SIGKILL

    plugin = make(tmp_path, slots=2)
    ids = [f"orphan-{i}" for i in range(6)] + ["not-there"]
    found = plugin.find_submitted(ids)

    assert set(found) == set(ids) - {"not-there"}
    status = wait_final(plugin, found)
    assert {j: s.exit_code for j, s in status.items()} == {f"orphan-{i}": i for i in range(6)}
    assert plugin.query(["not-there"])["not-there"].state is BatchState.LOST


def test_resubmitting_an_active_job_does_not_run_it_twice(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=1)
    first = plugin.submit([sh("once", tmp_path, "echo run >> runs; sleep 0.5")])
    second = plugin.submit([sh("once", tmp_path, "echo run >> runs; sleep 0.5")])
    assert first == second
    wait_final(plugin, ["once"])
    assert (tmp_path / "jobs" / "once" / "runs").read_text() == "run\n"

    third = plugin.submit([sh("once", tmp_path, "echo run >> runs")])  # a retry after the end
    assert third != first
    wait_final(plugin, ["once"])
    assert (tmp_path / "jobs" / "once" / "runs").read_text() == "run\nrun\n"


def test_thousands_of_queued_jobs(tmp_path: Path) -> None:
    plugin = make(tmp_path, slots=1)
    jobs = [sh("blocker", tmp_path, "sleep 60")] + [
        sh(f"bulk-{i}", tmp_path, "true") for i in range(3000)
    ]
    t0 = time.perf_counter()
    accepted = plugin.submit(jobs)
    t1 = time.perf_counter()
    status = plugin.query(accepted)
    t2 = time.perf_counter()
    print(f"\nlocal executor: submit 3001 jobs {t1 - t0:.2f} s, query {t2 - t1:.2f} s")

    assert len(accepted) == 3001
    assert sum(s.state is BatchState.QUEUED for s in status.values()) >= 2999
    assert plugin.capacity()[0].queued >= 2999
    plugin.kill(accepted)
    final = wait_final(plugin, accepted, timeout=30)
    assert {s.error_class for s in final.values()} == {"CANCELLED"}


@pytest.mark.parametrize("bad", [{"slots": 0}, {"unknown": 1}])
def test_options_are_validated(tmp_path: Path, bad: dict[str, object]) -> None:
    from prodagent.errors import ConfigError

    with pytest.raises(ConfigError):
        load_plugin("local", bad, tmp_path)
