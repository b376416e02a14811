"""Processing existing files, end to end: a COMPASS-style file list written by the test,
reconstructed by two agents (real payloads on the local executor) against one ProdManager,
merged per run.

Each processed input event ends in exactly one merged mDST, whichever agent ran it; a job
SIGKILLed mid-way (it hangs on purpose on its first attempt) and a job failing once are both
redone; a chunk that fails for good leaves its run needing attention, with its numbers and
unmerged, until an operator accepts it; each run is merged whole (after all its chunks)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

from prodagent.db.schema import pa_job, pa_job_transition
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.payload import rootio
from tests.e2e.fault_env import wait_until
from tests.payload.rawfiles import NAME_PATTERN, write_runs

EVENTS = 15


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    made = Manager(tmp_path / "pm", f"sqlite:///{tmp_path / 'pm.db'}", lease_s=60.0,
                   input_prefixes=(f"{tmp_path / 'raw'}/",))
    made.start()
    agents: list[AgentProcesses] = []
    made.agents = agents  # type: ignore[attr-defined]
    yield made
    for agent in agents:
        agent.stop()
    made.stop()


def processing(name: str, files: list[dict[str, Any]], fail_plan: str) -> dict[str, Any]:
    return {
        "kind": "processing", "name": name,
        "payload": {"transformation": "reconstruct", "version": "1",
                    "parameters": {"fail_plan": fail_plan}},
        "input": {"files": files, "name_pattern": NAME_PATTERN, "files_per_job": 1},
        "output": {"dataset": f"/Raw/{name}/MDST", "tier": "MDST"},
        "merge": {"per_run": True, "min_size_bytes": 1, "max_size_bytes": 1 << 20, "max_wait_s": 1},
        "retry": {"max_retries": 2, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 1000, "time_s": 300},
    }


def merged_files(root: Path) -> dict[str, list[tuple[int, int]]]:
    """{merged mDST name: its (run, event) pairs} of every merged mDST under `root`."""
    found = {}
    for path in root.glob("agent*/data/merged/**/*.root"):
        if not path.name.endswith(".hist.root"):
            cols = rootio.open_tree(path).arrays(["run", "event"], library="np")
            found[path.name] = list(zip(cols["run"].tolist(), cols["event"].tolist(), strict=True))
    return found


def kill_hanging_payload(root: Path, timeout: float = 120) -> int:
    """SIGKILL the reconstruction that hangs on purpose; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "prodagent.payload.reconstruct" in cmd and "--fail-mode=hang" in cmd and str(root) in cmd:
                os.kill(proc.pid, signal.SIGKILL)
                return proc.pid
        time.sleep(0.3)
    raise AssertionError("the hanging reconstruction never started")


def test_file_list_pulled_by_two_agents_each_file_once(tmp_path: Path, manager: Manager) -> None:
    files = write_runs(tmp_path / "raw", {275772: 4, 275773: 3}, EVENTS)
    client = manager.client("requester", "tester")
    # job 1 fails once, job 3 hangs (SIGKILLed below), job 5 (run 275773 chunk 2) always fails
    request = client.submit(processing("compass", files, "1:exit,3:hang,5:exit:9")).request
    for name in ("agent1", "agent2"):
        path = write_agent_config(tmp_path / f"{name}.yaml", tmp_path / name, manager, name=name, slots=2,
                                  settings={"ProdMgrInterface": {"queue_factor": 0.0}})  # room to share
        agent = AgentProcesses(path)
        agent.start()
        manager.agents.append(agent)  # type: ignore[attr-defined]
    kill_hanging_payload(tmp_path)

    def run_states() -> dict[int, Any]:
        return {r.run: r for r in client.runs(request.id)}

    def held_back() -> Any:
        now = run_states()
        return now[275772].state == "merged" and now[275773].state == "needs_attention" and now[275773]

    held = wait_until(held_back, 240, "run 275773 to need attention and 275772 to be merged")
    assert held.reason == f"1 of 3 file(s) failed: {2 * EVENTS} of {3 * EVENTS} input events processed"
    assert held.files["processed"] == 2 and held.files["failed"] == 1
    assert client.get(request.id).state == "failed"
    assert not [n for n in merged_files(tmp_path) if "run275773" in n]  # held: not merged
    manager.client("operator", "ops").decide_run(request.id, 275773, "accept", "chunk 2 is lost")
    view = wait_until(lambda: (v := client.get(request.id)).state == "closed" and v, 240, "the request to close")
    assert view.counters.events_merged == (len(files) - 1) * EVENTS

    expected = []
    for f in files:
        if not f["lfn"].endswith("cdr12002-275773.raw"):
            cols = rootio.open_tree(f["lfn"]).arrays(["run", "event"], library="np")
            expected += zip(cols["run"].tolist(), cols["event"].tolist(), strict=True)
    merged = merged_files(tmp_path)
    assert sorted(p for pairs in merged.values() for p in pairs) == sorted(expected)  # each exactly once
    for name, pairs in merged.items():  # each merged file holds one run, and is named by it
        (run,) = {r for r, _ in pairs}
        assert f"-run{run}-0" in name
    done, reasons, last_chunk, merges = {}, [], {}, []
    for agent in manager.agents:  # type: ignore[attr-defined]
        engine = sa.create_engine(agent.config.db_url)
        with engine.connect() as conn:
            done[agent.config.agent.name] = conn.execute(sa.select(sa.func.count()).where(
                pa_job.c.job_type == "production", pa_job.c.state.in_(["success", "cleaned"]))).scalar()
            reasons += conn.execute(sa.select(pa_job_transition.c.reason)).scalars().all()
            for run, at in conn.execute(
                sa.select(pa_job.c.run, sa.func.max(pa_job_transition.c.at))
                .join(pa_job_transition, pa_job_transition.c.job_id == pa_job.c.id)
                .where(pa_job.c.job_type == "production", pa_job_transition.c.to_state == "success")
                .group_by(pa_job.c.run)):
                last_chunk[int(run)] = max(at, last_chunk.get(int(run), 0.0))
            merges += conn.execute(sa.select(pa_job.c.name, pa_job.c.created_at)
                                   .where(pa_job.c.job_type == "merge")).all()
        engine.dispose()
    for name, created in merges:  # no run merged before all its chunks were processed
        run = int(name.split("-run")[1].split("-")[0])
        assert created >= last_chunk[run], (name, created, last_chunk)
    assert sum(done.values()) == len(files) - 1 and all(done.values()), done  # both agents took files
    assert any("SIGKILL" in (r or "") for r in reasons)  # the killed attempt is on record, and redone
