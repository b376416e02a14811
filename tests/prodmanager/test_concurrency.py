"""Real concurrency: agent processes racing for one request, through the database layer and over
HTTP against several `prodmanager serve` processes; an agent killed with SIGKILL."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prodmanager.client import ProdManagerClient
from prodmanager.errors import LeaseLost
from prodmanager.models import AgentRegistration
from tests.prodmanager.conftest import Env, child_env, mc_workflow, submit
from tests.prodmanager.workers import db_layer_agent, read_log


def assert_exact_cover(ranges: list[tuple[int, int]], total: int) -> None:
    """The (first_event, n_events) ranges tile 0..total exactly: none twice, none missing."""
    position = 0
    for first, n in sorted(ranges):
        assert first == position, f"gap or overlap at event {position} (next range starts {first})"
        position += n
    assert position == total


def test_three_processes_acquire_through_the_database_layer(env: Env) -> None:
    total, per_job = 30_000, 100
    rid = submit(env, "alice", mc_workflow("race_db", total, per_job))
    agents = ["a1", "a2", "a3"]
    for name in agents:
        env.pull.register(env.who("agent1"), AgentRegistration(name=name, capacity=10_000))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(agents))  # all start acquiring at the same moment
    queue = context.Queue()
    procs = [
        context.Process(target=db_layer_agent, args=(env.url, name, "agent1", 2, barrier, queue))
        for name in agents
    ]
    for proc in procs:
        proc.start()
    by_agent = dict(queue.get(timeout=60) for _ in agents)
    for proc in procs:
        proc.join(10)
    results = [by_agent[name] for name in agents]
    got = [item for result in results for item in result]
    ids = [g[0] for g in got]
    assert len(ids) == len(set(ids)) == total // per_job  # no allocation handed out twice
    assert_exact_cover([(g[1], g[2]) for g in got], total)
    if env.db.dialect != "sqlite":  # SQLite serialises writers; its lock is not fair
        assert all(len(r) > 0 for r in results), [len(r) for r in results]
    holders = {a.allocation_id: a.agent for a in env.requests.allocations(env.who("ops"), rid)}
    for name, result in zip(agents, results, strict=True):
        assert all(holders[g[0]] == name for g in result)


def start_agent(
    url: str,
    token: str,
    agent: str,
    out: Path,
    mode: str,
    jobs: int,
    start_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "tests.prodmanager.workers",
        url,
        token,
        agent,
        str(out),
        "--mode",
        mode,
        "--jobs",
        str(jobs),
    ]
    if start_file is not None:
        cmd += ["--start-file", str(start_file)]
    return subprocess.Popen(cmd, env=child_env(), stderr=subprocess.PIPE)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait()


def wait_for_state(
    client: ProdManagerClient,
    rid: int,
    state: str,
    procs: list[subprocess.Popen[bytes]],
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(rid).state == state:
            return
        for proc in procs:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"agent process exited {proc.returncode}: {err[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"request {rid} not {state} after {timeout} s: {client.get(rid).counters}")


def test_three_http_agents_on_two_servers(
    env: Env, serve_processes: Callable[..., list[str]], tmp_path: Path
) -> None:
    urls = serve_processes(2, lease_s=60.0)
    total, per_job = 6000, 100
    requester = ProdManagerClient(urls[0], env.tokens["alice"])
    rid = requester.submit(mc_workflow("race_http", total, per_job)).request.id
    logs = [tmp_path / f"agent{i}.jsonl" for i in range(3)]
    start_file = tmp_path / "go"
    procs = [
        start_agent(urls[i % 2], env.tokens["agent1"], f"http{i}", logs[i], "work", 3, start_file)
        for i in range(3)
    ]
    deadline = time.monotonic() + 30
    while not all(any(r["event"] == "ready" for r in read_log(log)) for log in logs):
        assert time.monotonic() < deadline, "agents did not get ready"
        time.sleep(0.05)
    start_file.touch()
    try:
        wait_for_state(requester, rid, "completed", procs, timeout=60)
    finally:
        stop(procs)
    records = [r for log in logs for r in read_log(log)]
    acquired = [r["allocation_id"] for r in records if r["event"] == "acquired"]
    assert len(acquired) == len(set(acquired)) == total // per_job
    completed = [(r["first_event"], r["n_events"]) for r in records if r["event"] == "completed"]
    assert_exact_cover(completed, total)  # type: ignore[arg-type]
    assert all(any(r["event"] == "acquired" for r in read_log(log)) for log in logs)
    counters = requester.get(rid).counters
    assert (counters.events_produced, counters.files_unmerged, counters.allocations["done"]) == (
        total,
        60,
        60,
    )


def test_killed_agent_work_goes_to_others_and_late_report_is_refused(
    env: Env, serve_processes: Callable[..., list[str]], tmp_path: Path
) -> None:
    [url] = serve_processes(1, lease_s=2.0)
    total, per_job = 3000, 100
    ops = ProdManagerClient(url, env.tokens["ops"])
    rid = ops.submit(mc_workflow("sigkill", total, per_job)).request.id
    victim_log = tmp_path / "victim.jsonl"
    victim = start_agent(url, env.tokens["agent1"], "victim", victim_log, "hold", 5)
    deadline = time.monotonic() + 20
    while not any(r["event"] == "holding" for r in read_log(victim_log)):
        assert time.monotonic() < deadline and victim.poll() is None, "victim never held work"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    held = [r for r in read_log(victim_log) if r["event"] == "acquired"]
    assert len(held) == 5

    logs = [tmp_path / "w1.jsonl", tmp_path / "w2.jsonl"]
    workers = [
        start_agent(url, env.tokens["agent2"], f"w{i}", log, "work", 4)
        for i, log in enumerate(logs)
    ]
    try:
        wait_for_state(ops, rid, "completed", workers, timeout=60)
    finally:
        stop(workers)

    records = [r for log in logs for r in read_log(log)]
    completed = {r["allocation_id"]: r for r in records if r["event"] == "completed"}
    assert_exact_cover([(r["first_event"], r["n_events"]) for r in completed.values()], total)  # type: ignore[misc]
    for lost in held:
        assert completed[lost["allocation_id"]]["lease_epoch"] == 2  # re-leased after expiry
    detail = ops.get(rid)
    assert (detail.counters.events_produced, detail.counters.allocations["done"]) == (total, 30)

    # The dead agent comes back late: its reports are refused and nothing is counted twice.
    late = ProdManagerClient(url, env.tokens["agent1"])
    first = held[0]
    with pytest.raises(LeaseLost):
        late.complete("victim", (first["allocation_id"], first["lease_token"]), events_done=per_job)  # type: ignore[arg-type]
    with pytest.raises(LeaseLost):
        late.report("victim", (first["allocation_id"], first["lease_token"]), events_done=per_job)  # type: ignore[arg-type]
    statuses = late.renew("victim", [(r["allocation_id"], r["lease_token"]) for r in held])  # type: ignore[misc]
    assert {s.status for s in statuses} == {"expired"}
    after = ops.get(rid).counters
    assert after.events_produced == total and after.files_unmerged == detail.counters.files_unmerged
