"""JobEmulator: drawn outcomes, black hole, shared on-disk state, synthetic reports, scale."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from prodagent.batch.base import BatchJob, BatchState, BatchStatus
from prodagent.batch.emulator import JobEmulator
from prodagent.batch.registry import load_plugin
from prodagent.errors import ConfigError
from prodagent.payload.report import read_report

OUTCOMES = [
    {"probability": 0.10, "exit_code": 3},
    {"probability": 0.05, "log": "A FATAL ERROR APPEARED"},
    {"probability": 0.05, "lost": True},
    {"probability": 0.05, "error_class": "OUT_OF_MEMORY"},
]


def make(workdir: Path, **options: object) -> JobEmulator:
    plugin = load_plugin("emulator", dict(options), workdir)
    assert isinstance(plugin, JobEmulator)
    return plugin


def jobs(base: Path, count: int, prefix: str = "job") -> list[BatchJob]:
    return [
        BatchJob(f"{prefix}-{i}", ["true"], base / "jobs" / f"{prefix}-{i}") for i in range(count)
    ]


def kind(status: BatchStatus) -> str:
    if status.state is BatchState.LOST:
        return "lost"
    if status.state is BatchState.FAILED:
        return status.error_class or "FAILED"
    return f"exit {status.exit_code}"


def test_outcome_fractions_follow_the_configuration(tmp_path: Path) -> None:
    plugin = make(tmp_path, seed=7, duration={"value_s": 0}, outcomes=OUTCOMES, write_reports=False)
    batch = jobs(tmp_path, 4000)
    plugin.submit(batch)
    counts = Counter(kind(s) for s in plugin.query(j.job_id for j in batch).values())

    # the log-pattern jobs exit 0 like the successes; their logs tell them apart
    assert counts["exit 3"] / 4000 == pytest.approx(0.10, abs=0.02)
    assert counts["lost"] / 4000 == pytest.approx(0.05, abs=0.015)
    assert counts["OUT_OF_MEMORY"] / 4000 == pytest.approx(0.05, abs=0.015)
    assert counts["exit 0"] / 4000 == pytest.approx(0.80, abs=0.02)


def test_draws_are_deterministic_per_seed(tmp_path: Path) -> None:
    def outcomes(seed: int, where: str) -> dict[str, str]:
        plugin = make(
            tmp_path / where,
            seed=seed,
            duration={"value_s": 0},
            outcomes=OUTCOMES,
            write_reports=False,
        )
        batch = jobs(tmp_path / where, 300)
        plugin.submit(batch)
        return {k: kind(v) for k, v in plugin.query(j.job_id for j in batch).items()}

    assert outcomes(1, "a") == outcomes(1, "b")
    assert outcomes(1, "a") != outcomes(2, "c")


def test_black_hole_node_fails_its_jobs_quickly(tmp_path: Path) -> None:
    plugin = make(
        tmp_path,
        seed=3,
        duration={"value_s": 3600},
        black_hole={"fraction": 0.3, "duration_s": 0.0, "exit_code": 1},
    )
    batch = jobs(tmp_path, 500)
    plugin.submit(batch)
    status = plugin.query(j.job_id for j in batch)

    holed = [s for s in status.values() if s.state is BatchState.DONE]
    assert len(holed) / 500 == pytest.approx(0.3, abs=0.06)
    assert {s.exit_code for s in holed} == {1}
    assert all("emu-blackhole" in (s.reason or "") for s in holed)
    assert {s.state for s in status.values()} == {BatchState.DONE, BatchState.RUNNING}
    report = read_report(tmp_path / "jobs" / holed[0].job_id)
    assert report is not None and report.status == "failed"
    assert "A FATAL ERROR APPEARED" in (report.error_reason or "")


def test_reports_outputs_and_log_patterns(tmp_path: Path) -> None:
    plugin = make(
        tmp_path,
        seed=5,
        duration={"value_s": 0},
        output_bytes=64,
        outcomes=[{"probability": 0.5, "log": "A FATAL ERROR APPEARED"}],
    )
    batch = jobs(tmp_path, 40)
    plugin.submit(batch)
    plugin.query(j.job_id for j in batch)

    reports = {j.job_id: read_report(j.workdir) for j in batch}
    good = [r for r in reports.values() if r is not None and r.ok]
    bad = [r for r in reports.values() if r is not None and not r.ok]
    assert len(good) + len(bad) == 40 and good and bad
    assert all(r.outputs and Path(r.outputs[0].path).stat().st_size == 64 for r in good)
    assert all(r.end_of_job_seen for r in good)
    for r in bad:
        assert "A FATAL ERROR APPEARED" in Path(r.log_path).read_text()
        assert not r.outputs


def test_worker_node_process_writes_the_results_not_the_querying_process(tmp_path: Path) -> None:
    """`reports_by: nodes`: the emulator's node process writes each ended job's report; the job
    still runs for a querying agent until it has; the node process stops once idle."""
    import os

    import psutil

    from prodagent.batch import emulator_nodes

    plugin = make(tmp_path, seed=5, duration={"value_s": 0.5}, reports_by="nodes", nodes_idle_s=2,
                  outcomes=[{"probability": 0.3, "exit_code": 2}, {"probability": 0.2, "error_class": "NODE_FAIL"}])
    batch = jobs(tmp_path, 30)
    plugin.submit(batch)
    deadline = time.monotonic() + 60
    while True:
        statuses = plugin.query(j.job_id for j in batch)
        if all(s.state in (BatchState.DONE, BatchState.FAILED) for s in statuses.values()):
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
    done = [j for j in batch if statuses[j.job_id].state is BatchState.DONE]
    failed = [j for j in batch if statuses[j.job_id].state is BatchState.FAILED]
    assert done and failed
    assert all(read_report(j.workdir) is not None for j in done)  # written before the job was DONE
    assert all(read_report(j.workdir) is None for j in failed)  # a batch failure leaves none
    log = (tmp_path / "emulator" / "nodes.log").read_text()
    node_pid = int(log.split("pid ")[1].split()[0])
    assert node_pid != os.getpid()
    # Idle: it stops by itself (nodes_idle_s), and only one ever ran for the directory.
    emulator_nodes.ensure_running(tmp_path, plugin.opts)  # one runs: starts nothing
    assert log.count("pid ") == 1
    assert psutil.pid_exists(node_pid)
    psutil.Process(node_pid).wait(30)
    plugin.close()


def test_state_is_shared_between_instances_and_survives_them(tmp_path: Path) -> None:
    submitter = make(tmp_path, queue_delay={"value_s": 3600})
    accepted = submitter.submit(jobs(tmp_path, 20))
    submitter.close()

    tracker = make(tmp_path, queue_delay={"value_s": 3600})
    assert tracker.find_submitted([*accepted, "unknown"]) == accepted
    assert {s.state for s in tracker.query(accepted).values()} == {BatchState.QUEUED}
    assert tracker.capacity()[0].queued == 20
    assert tracker.query(["unknown"])["unknown"].state is BatchState.LOST


def test_kill_and_resubmission(tmp_path: Path) -> None:
    plugin = make(tmp_path, duration={"value_s": 3600})
    first = plugin.submit(jobs(tmp_path, 3))
    assert plugin.submit(jobs(tmp_path, 3)) == first  # active jobs are not started twice

    plugin.kill(["job-0", "not-there"])
    status = plugin.query(first)
    assert (status["job-0"].state, status["job-0"].error_class) == (BatchState.FAILED, "CANCELLED")
    assert status["job-1"].state is BatchState.RUNNING

    again = plugin.submit(jobs(tmp_path, 1))  # a retry of the killed job is a new attempt
    assert again["job-0"] != first["job-0"]
    assert plugin.query(["job-0"])["job-0"].state is BatchState.RUNNING


def test_invalid_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        make(tmp_path, outcomes=[{"probability": 0.7}, {"probability": 0.7}])
    with pytest.raises(ConfigError):
        make(tmp_path, duration={"distribution": "gaussian"})


@pytest.mark.parametrize(
    "distribution",
    [
        {"distribution": "uniform", "min_s": 10, "max_s": 20},
        {"distribution": "exponential", "mean_s": 5},
    ],
)
def test_duration_distributions(tmp_path: Path, distribution: dict[str, object]) -> None:
    plugin = make(tmp_path, duration=distribution)
    plugin.submit(jobs(tmp_path, 2000))
    rows = list(plugin.db.rows(f"job-{i}" for i in range(2000)))
    lengths = [r.end - r.start for r in rows]
    if distribution["distribution"] == "uniform":
        assert min(lengths) >= 10 and max(lengths) <= 20
        assert sum(lengths) / len(lengths) == pytest.approx(15, abs=0.5)
    else:
        assert sum(lengths) / len(lengths) == pytest.approx(5, rel=0.1)


def test_query_over_100000_active_jobs(tmp_path: Path) -> None:
    plugin = make(tmp_path, duration={"value_s": 3600})
    batch = [BatchJob(f"scale-{i}", ["true"], tmp_path / "j" / str(i)) for i in range(100_000)]
    t0 = time.perf_counter()
    accepted = plugin.submit(batch)
    t1 = time.perf_counter()
    status = plugin.query(accepted)
    t2 = time.perf_counter()
    print(
        f"\nemulator: submit 100,000 jobs {t1 - t0:.2f} s, query 100,000 active jobs "
        f"{t2 - t1:.2f} s"
    )
    assert len(status) == 100_000
    assert {s.state for s in status.values()} == {BatchState.RUNNING}
    assert plugin.capacity()[0].running == 100_000
