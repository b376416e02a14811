"""Agents on demand: during a production a second agent is made with one command and pulls work
at once; draining the first gives back what it had not started, finishes the rest, and stops,
and the request completes exactly with no lease left to expire.

Real processes: `prodmanager serve`, two agents' daemons (the JobEmulator as batch system, each
agent on its own SQLite database), `prodAgentd init` and `prodAgentd drain` as an operator runs them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from prodagent.db.schema import pa_allocation
from prodagent.demo.stack import AgentProcesses, Manager, _env, write_agent_config
from prodmanager.db.schema import allocation as pm_allocation
from tests.e2e.emulated import mc_workflow

EVENTS_PER_JOB = 5
JOBS = 60


def prodagentd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prodagent.cli.daemon_cli", *args], capture_output=True,
                          text=True, env=_env(), timeout=300, start_new_session=True)


def held(url: str, agent: str, alloc_states: tuple[str, ...] = ("acquired", "active")) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                pa_allocation.c.agent == agent, pa_allocation.c.state.in_(alloc_states))).scalar_one())
    finally:
        engine.dispose()


def test_second_agent_on_demand_and_drain_of_the_first(tmp_path: Path) -> None:
    manager = Manager(tmp_path / "pm", f"sqlite:///{tmp_path / 'pm' / 'pm.db'}", lease_s=600)
    manager.start()
    emulator = {"seed": 2, "slots": 3, "duration": {"distribution": "uniform", "min_s": 2.5, "max_s": 3.5},
                "output_bytes": 256}
    first = AgentProcesses(write_agent_config(
        tmp_path / "agent1.yaml", tmp_path / "agent1", manager, db_url=f"sqlite:///{tmp_path / 'agent1.db'}",
        batch={"plugin": "emulator", "options": emulator},
        settings={"ProdMgrInterface": {"tick_s": 0.5, "queue_factor": 3.0},
                  "JobSubmitter": {"tick_s": 0.3, "max_queued_per_slot": 0}, "JobTracker": {"tick_s": 0.3},
                  "MergeSensor": {"tick_s": 0.5}, "ResourceMonitor": {"tick_s": 0.5}}))
    second_dir = tmp_path / "agent2"
    second_cfg = second_dir / "etc" / "prodagent.yaml"
    try:
        assert first.cli("db", "upgrade").returncode == 0
        first.start()
        client = manager.client("requester", "tester")
        request = client.submit(mc_workflow("ondemand", EVENTS_PER_JOB * JOBS, EVENTS_PER_JOB)).request
        deadline = time.monotonic() + 60
        while held(first.config.db_url, "agent1") < 5:  # the first agent holds a backlog
            assert time.monotonic() < deadline
            time.sleep(0.3)

        token_file = tmp_path / "agent2.token"
        token_file.write_text(manager.token("agent", "agent2"))
        made = prodagentd("init", "agent2", "--token-file", str(token_file), "--workdir", str(second_dir),
                          "--template", str(first.config_path), "--start")
        assert made.returncode == 0, made.stdout + made.stderr
        assert "registered with" in made.stdout
        second = AgentProcesses(second_cfg)
        assert second.config.agent.name == "agent2" and second.config.db_url != first.config.db_url

        deadline = time.monotonic() + 60
        while held(second.config.db_url, "agent2", ("acquired", "active", "done")) == 0:  # pulls at once
            assert time.monotonic() < deadline, "the second agent never pulled work"
            time.sleep(0.3)
        engine1 = sa.create_engine(first.config.db_url)
        with engine1.connect() as conn:
            before = conn.execute(sa.text("select state, count(*) from pa_job group by state")).all()
        engine1.dispose()
        drained = prodagentd("--config", str(first.config_path), "drain", "--timeout", "180")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        assert "drained" in drained.stdout

        deadline = time.monotonic() + 300  # under a loaded suite the last merge waits its turn
        while (request := client.get(request.id)).counters.events_merged < request.total_events:
            assert time.monotonic() < deadline, request.counters
            time.sleep(0.5)
        assert request.counters.events_merged == request.total_events == EVENTS_PER_JOB * JOBS
        assert held(first.config.db_url, "agent1") == 0
        assert held(first.config.db_url, "agent1", ("released",)) > 0, before  # its backlog was given back
        engine = sa.create_engine(manager.db_url)
        with engine.connect() as conn:
            by_agent = dict(conn.execute(sa.select(pm_allocation.c.agent, sa.func.count())
                                         .where(pm_allocation.c.state == "done")
                                         .group_by(pm_allocation.c.agent)).all())
            open_leases = conn.execute(sa.select(sa.func.count()).where(
                pm_allocation.c.agent == "agent1", pm_allocation.c.state == "open")).scalar_one()
        engine.dispose()
        assert open_leases == 0  # nothing left leased to the drained agent, no lease to expire
        assert by_agent.get("agent1", 0) > 0 and by_agent.get("agent2", 0) > 0, by_agent
        assert sum(by_agent.values()) == JOBS
    finally:
        if second_cfg.exists():
            AgentProcesses(second_cfg).stop()
        first.stop()
        manager.stop()
