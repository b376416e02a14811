"""Fair shares: two groups weighted 70/30 with plenty of work each; after a warm-up the agent's
running slots follow the shares within 5 points, and priorities order requests within a group.

Real processes: `prodmanager serve --share prod=70 --share test=30`, one agent on the emulator
with 20 slots and no queue (it holds what it runs).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodagent.db.schema import pa_job
from prodmanager.shares import parse, quotas
from tests.e2e.emulated import manager_and_agent, mc_workflow

SLOTS = 20


def workflow(name: str, group: str, priority: int = 1000, jobs: int = 400) -> dict[str, Any]:
    return mc_workflow(name, jobs, 1, group=group, priority=priority, merge={"enabled": False})


def test_quotas_move_leases_towards_the_shares() -> None:
    shares = parse(["prod=70", "test=30"])
    assert quotas(10, {}, ["prod", "test"], shares) == {"prod": 7, "test": 3}
    assert quotas(10, {"prod": 20, "test": 0}, ["prod", "test"], shares) == {"prod": 1, "test": 9}
    assert quotas(10, {"prod": 5}, ["prod"], shares) == {"prod": 10}  # alone with work: all of it
    assert sum(quotas(7, {"prod": 3, "test": 3, "x": 0}, ["prod", "test", "x"], shares).values()) == 7
    with pytest.raises(ValueError, match="--share 'bad'"):
        parse(["bad"])


def test_running_slots_follow_shares(tmp_path: Path) -> None:
    emulator = {"seed": 5, "slots": SLOTS, "duration": {"distribution": "uniform", "min_s": 1.5, "max_s": 2.5},
                "output_bytes": 64, "write_reports": True}
    settings = {"ProdMgrInterface": {"tick_s": 0.5, "queue_factor": 0.0},
                "JobSubmitter": {"tick_s": 0.3, "max_queued_per_slot": 0}, "JobTracker": {"tick_s": 0.3},
                "ResourceMonitor": {"tick_s": 0.5}}
    with manager_and_agent(tmp_path, settings, batch={"plugin": "emulator", "options": emulator},
                           shares={"prod": 70, "test": 30}) as (manager, agent, engine):
        client = manager.client("requester", "tester")
        low = client.submit(workflow("prod-low", "prod", priority=10)).request
        prod = client.submit(workflow("prod-high", "prod", priority=500)).request
        client.submit(workflow("test-only", "test"))
        agent.start()
        samples: list[float] = []
        deadline = time.monotonic() + 120
        while len(samples) < 30:
            with engine.connect() as conn:
                running = dict(conn.execute(
                    sa.select(pa_job.c.request_id, sa.func.count())
                    .where(pa_job.c.state.in_(["submitted", "running"])).group_by(pa_job.c.request_id)).all())
            total = sum(running.values())
            if total >= SLOTS * 0.8:  # warmed up: the slots are (nearly) full
                samples.append(100.0 * (running.get(str(prod.id), 0) + running.get(str(low.id), 0)) / total)
                assert running.get(str(low.id), 0) == 0  # the higher priority goes first within its group
            assert time.monotonic() < deadline, f"only {len(samples)} samples; running {running}"
            time.sleep(0.4)
    share = statistics.median(samples[5:])
    assert abs(share - 70) <= 5, (share, samples)
