"""Processing existing files, end to end: a COMPASS-style file list written by the test,
reconstructed by two agents (real payloads on the local executor) against one ProdManager.

Each input event ends in exactly one merged mDST, whichever agent ran it; a job SIGKILLed
mid-way (it hangs on purpose on its first attempt) and a job failing once are both redone."""

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
        "merge": {"min_size_bytes": 1, "max_size_bytes": 1 << 20, "max_wait_s": 1},
        "retry": {"max_retries": 3, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 1000, "time_s": 300},
    }


def merged_pairs(root: Path) -> list[tuple[int, int]]:
    """(run, event) of every entry of every merged mDST under `root`, duplicates kept."""
    pairs: list[tuple[int, int]] = []
    for path in root.glob("agent*/data/merged/**/*.root"):
        if path.name.endswith(".hist.root"):
            continue
        cols = rootio.open_tree(path).arrays(["run", "event"], library="np")
        pairs += zip(cols["run"].tolist(), cols["event"].tolist(), strict=True)
    return pairs


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
    request = client.submit(processing("compass", files, "1:exit,3:hang")).request
    for name in ("agent1", "agent2"):
        path = write_agent_config(tmp_path / f"{name}.yaml", tmp_path / name, manager, name=name, slots=2,
                                  settings={"ProdMgrInterface": {"queue_factor": 0.0}})  # room to share
        agent = AgentProcesses(path)
        agent.start()
        manager.agents.append(agent)  # type: ignore[attr-defined]
    kill_hanging_payload(tmp_path)

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        view = client.get(request.id)
        if view.state == "closed":
            break
        time.sleep(1.0)
    assert view.state == "closed", view
    assert view.total_events == view.counters.events_merged == len(files) * EVENTS

    expected = []
    for f in files:
        cols = rootio.open_tree(f["lfn"]).arrays(["run", "event"], library="np")
        expected += zip(cols["run"].tolist(), cols["event"].tolist(), strict=True)
    assert sorted(merged_pairs(tmp_path)) == sorted(expected)  # every event, each exactly once
    done, reasons = {}, []
    for agent in manager.agents:  # type: ignore[attr-defined]
        engine = sa.create_engine(agent.config.db_url)
        with engine.connect() as conn:
            done[agent.config.agent.name] = conn.execute(sa.select(sa.func.count()).where(
                pa_job.c.job_type == "production", pa_job.c.state.in_(["success", "cleaned"]))).scalar()
            reasons += conn.execute(sa.select(pa_job_transition.c.reason)).scalars().all()
        engine.dispose()
    assert sum(done.values()) == len(files) and all(done.values()), done  # both agents took files
    assert any("SIGKILL" in (r or "") for r in reasons)  # the killed attempt is on record, and redone
