"""per_job auto end to end: the real cost per event is ten times the requester's guess.

Real processes and two emulated sites whose jobs run `events x 50 ms` with a peak memory drawn
between 400 and 600 MB. After the scouts, every job runs within 25 % of the target length (read
from the job reports), asks for more memory than any job ever used, and the request ends with
exactly its events. ProdManager has the agent's estimate: `prodrequest show` prints it with the
figures behind it and the formula.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from prodagent.db.schema import pa_job
from prodagent.jobs import sizing
from prodrequest.cli import main as prodrequest_cli
from tests.e2e.emulated import manager_and_agent, mc_workflow
from tests.prodmanager.test_sizing_reports import cells, formula_of

REAL_S_PER_EVENT = 0.05
GUESS_S_PER_EVENT = 0.005
TARGET_S = 1.0
TOTAL = 1200


def emulator(seed: int) -> dict[str, Any]:
    return {"seed": seed, "per_event_s": REAL_S_PER_EVENT, "per_event_jitter": 0.05, "nodes": 2,
            "duration": {"value_s": 0.3},  # merge jobs (no per-event cost)
            "rss_mb": {"distribution": "uniform", "min_s": 400, "max_s": 600}, "output_bytes": 256}


@pytest.fixture
def stack(tmp_path: Path):  # type: ignore[no-untyped-def]
    sites = [{"name": f"site{i}", "plugin": "emulator", "slots": 4, "options": emulator(i)} for i in (1, 2)]
    settings = {"JobSubmitter": {"tick_s": 0.3, "max_queued_per_slot": 0}, "JobTracker": {"tick_s": 0.3},
                "JobCreator": {"tick_s": 0.3}, "ResourceMonitor": {"tick_s": 0.5}, "MergeSensor": {"tick_s": 0.5}}
    with manager_and_agent(tmp_path, settings, sites=sites) as stack:
        yield stack


def test_auto_sizing_reaches_the_target_from_scouts(stack) -> None:  # type: ignore[no-untyped-def]
    manager, agent, engine = stack
    agent.start()
    client = manager.client("requester", "tester")
    events = {"total": TOTAL, "per_job": "auto", "target_job_s": TARGET_S, "time_per_event_s": GUESS_S_PER_EVENT,
              "scouts": 4}
    request = client.submit(mc_workflow("auto", TOTAL, "auto", events=events)).request
    deadline = time.monotonic() + 150
    while True:
        request = client.get(request.id)
        with engine.connect() as conn:
            jobs = conn.execute(sa.select(pa_job).where(pa_job.c.job_type == "production")).all()
        if request.counters.events_merged >= request.total_events and jobs and \
                {j.state for j in jobs} == {"cleaned"}:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"jobs {Counter(j.state for j in jobs)}, counters {request.counters}")
        time.sleep(0.5)
    assert request.counters.events_merged == TOTAL
    assert sum(j.n_events for j in jobs) == TOTAL  # every event in exactly one job

    scouts = [j for j in jobs if j.scout]
    sized = [j for j in jobs if not j.scout]
    assert len(scouts) == 4 and len({j.site for j in scouts}) == 2  # spread over both sites
    walls = [j.wall_s for j in sized]  # as the job reports gave them (work areas are cleaned by now)
    assert all(abs(w - TARGET_S) <= 0.25 * TARGET_S for w in walls), sorted(walls)
    peak = max(j.max_rss_mb for j in jobs)
    assert all(j.memory_mb > peak for j in sized), (peak, {j.memory_mb for j in sized})

    shown = json.loads(agent.cli("sizing", "--json").stdout)
    assert shown[0]["state"] == "sized" and "median(wall_s / events)" in shown[0]["formula"]
    assert shown[0]["figures"]["scouts"] == 4
    assert abs(shown[0]["figures"]["median_wall_s_per_event"] - REAL_S_PER_EVENT) < 0.01

    # ProdManager has what the agent has (pushed once it changed; the last push may be a tick away)
    cli = ["--url", manager.url, "--token", manager.token("requester", "tester"), "show", str(request.id)]
    runner = CliRunner(env={"COLUMNS": "200"})
    deadline = time.monotonic() + 30
    while True:
        [pushed] = json.loads(runner.invoke(prodrequest_cli, [*cli, "--json"]).output)["sizing"] or [None]
        if pushed and pushed["figures"] == shown[0]["figures"]:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"ProdManager has {pushed}, the agent {shown[0]}")
        time.sleep(0.5)
    table = cells(runner.invoke(prodrequest_cli, cli).output)
    assert [f"agent {agent.config.agent.name}", "sized"] in [[k, v.split()[0]] for k, v in table]
    assert ["events per job", str(shown[0]["events_per_job"])] in table
    assert ["memory", f"{shown[0]['memory_mb']} MB"] in table and ["time", f"{shown[0]['time_s']} s"] in table
    measured = shown[0]["figures"]["jobs_measured"]
    assert ["based on", f"{measured} job(s) measured (4 scout(s))"] in table
    assert ["median_wall_s_per_event", str(shown[0]["figures"]["median_wall_s_per_event"])] in table
    assert formula_of(table) == sizing.FORMULA.split("; ")
