"""Several emulated sites behind one agent: a black-hole site is banned, probed and taken back
while the production completes exactly on the others; a black-hole node is excluded while its
site keeps running.

Real processes: `prodmanager serve`, the agent's daemons, three JobEmulator sites. `broken` fails
every job quickly with a node failure while its outage file exists; `holey` has one node that
fails a share of its jobs within 50 ms.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodagent.db.schema import pa_file, pa_job, pa_site_event, pa_site_result
from tests.e2e.emulated import manager_and_agent, mc_workflow

EVENTS_PER_JOB = 5
JOBS = 40
HEALTH = {"evaluate_s": 0.3, "min_jobs": 3, "ban_s": 1.0, "probe_jobs": 2, "probe_successes": 2,
          "max_banned_share": 0.34, "node_failures": 2, "node_quick_s": 0.3, "node_window_s": 60,
          "node_exclude_s": 600}


def emulator(seed: int, **extra: Any) -> dict[str, Any]:
    return {"seed": seed, "duration": {"distribution": "uniform", "min_s": 0.5, "max_s": 1.0}, "nodes": 3,
            "output_bytes": 512, **extra}


@pytest.fixture
def stack(tmp_path: Path):  # type: ignore[no-untyped-def]
    outage = tmp_path / "broken-site-is-down"
    outage.touch()
    sites = [
        {"name": "good", "plugin": "emulator", "slots": 2, "options": emulator(1)},
        {"name": "broken", "plugin": "emulator", "slots": 2,
         "options": emulator(2, outage={"broken_while": str(outage), "duration_s": 0.05})},
        {"name": "holey", "plugin": "emulator", "slots": 2,
         "options": emulator(3, black_hole={"node": "emu-blackhole", "fraction": 0.6, "duration_s": 0.05,
                                            "log": None})},
    ]
    fast = {"tick_s": 0.3, "reconcile_s": 2.0}
    settings = {"JobSubmitter": {**fast, "max_queued_per_slot": 0, "health": HEALTH}, "JobTracker": {"tick_s": 0.3},
                "ErrorHandler": {"reconcile_s": 2.0}, "ResourceMonitor": {"tick_s": 0.5}, "MergeSensor": {"tick_s": 0.5}}
    with manager_and_agent(tmp_path, settings, sites=sites) as (manager, agent, engine):
        yield manager, agent, engine, outage


def site_events(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(pa_site_event).order_by(pa_site_event.c.id)).all()


def test_black_hole_site_banned_and_probed_back_black_hole_node_excluded(stack) -> None:  # type: ignore[no-untyped-def]
    manager, agent, engine, outage = stack
    agent.start()
    client = manager.client("requester", "tester")
    retry = {"max_retries": 20, "cooloff": "linear", "base_s": 0.2}
    request = client.submit(mc_workflow("sites", EVENTS_PER_JOB * JOBS, EVENTS_PER_JOB, retry=retry)).request

    healed = False
    deadline = time.monotonic() + 180
    while True:
        request = client.get(request.id)
        events = site_events(engine)
        if not healed and any(e.site == "broken" and e.to_state == "banned" for e in events):
            outage.unlink()  # the site is repaired while banned: probing must take it back
            healed = True
        with engine.connect() as conn:
            jobs = conn.execute(sa.select(pa_job.c.state)).scalars().all()
        back = any(e.site == "broken" and e.from_state == "probing" and e.to_state == "normal" for e in events)
        if request.counters.events_merged >= request.total_events and jobs and set(jobs) == {"cleaned"} and back:
            break
        if time.monotonic() > deadline:
            logs = (agent.config.workdir / "logs" / "JobSubmitter.log").read_text()[-3000:]
            pytest.fail(f"jobs {Counter(jobs)}, counters {request.counters}, events "
                        f"{[(e.site, e.node, e.to_state, e.reason) for e in events]}\n{logs}")
        time.sleep(0.5)

    # Exact production, on the agent and in ProdManager.
    assert request.counters.events_merged == request.total_events == EVENTS_PER_JOB * JOBS
    with engine.connect() as conn:
        merged = conn.execute(sa.select(sa.func.sum(pa_file.c.events)).where(pa_file.c.kind == "merged")).scalar()
        results = conn.execute(sa.select(pa_site_result.c.site, pa_site_result.c.node, pa_site_result.c.ok,
                                         pa_site_result.c.at)).all()
    assert merged == request.total_events

    # The broken site went normal -> degraded -> banned -> probing -> normal, each change with its figures.
    path = [(e.from_state, e.to_state) for e in events if e.site == "broken" and e.node is None]
    cycle = [("normal", "degraded"), ("degraded", "banned"), ("banned", "probing"), ("probing", "normal")]
    at = [path.index(step) for step in cycle]  # each step happened, in this order
    assert at == sorted(at), path
    ban = next(e for e in events if e.site == "broken" and e.to_state == "banned")
    assert json.loads(ban.figures)["site_faults"] >= HEALTH["min_jobs"]
    # Probed back: it ran production successfully after its return.
    back_at = next(e.at for e in events if e.site == "broken" and e.to_state == "normal")
    assert any(r.site == "broken" and r.ok and r.at >= back_at - 5 for r in results)

    # The black-hole node was excluded; its site was never banned and ran on.
    exclusion = [e for e in events if e.site == "holey" and e.node == "emu-blackhole"]
    assert exclusion and exclusion[0].to_state == "node-excluded"
    assert not any(e.site == "holey" and e.to_state == "banned" for e in events)
    after = [r for r in results if r.site == "holey" and r.at > exclusion[0].at + 1]
    assert after and all(r.node != "emu-blackhole" for r in after) and any(r.ok for r in after)
    # The good site was never touched; the operator's view lists every site.
    assert not any(e.site == "good" for e in events if e.to_state != "normal")
    listed = json.loads(agent.cli("sites", "list", "--json").stdout)
    assert {s["site"]: s["state"] for s in listed} == {"good": "normal", "broken": "normal", "holey": "normal"}
