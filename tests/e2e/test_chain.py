"""A chained production, end to end: task A generates (Pythia), task B reconstructs A's dataset
as A merges it (a processing request with `input.dataset`), merged per run; failures injected in
both, on SQLite and on MariaDB (ProdManager and agent sharing the database; there with agent
components SIGKILLed and restarted mid-way).

Exactness: the (run, event) pairs of B's merged mDSTs are A's generated ones, each exactly once;
B's merged histograms are the sum of its unmerged ones; B's run is merged only after A ended and
every chunk of it was processed. Each merged mDST's parents (ProdManager's and the agent's
catalog) are A's merged files, all of them."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from prodagent.demo.chain import hist_sums, run_events
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.runtime import pidfiles
from prodrequest.cli import main as prodrequest_cli

RUN = 301
EVENTS, PER_JOB = 160, 40


@pytest.fixture
def stack(tmp_path: Path, db_url: str) -> Iterator[tuple[Manager, AgentProcesses]]:
    manager = Manager(tmp_path / "pm", db_url, lease_s=60.0)
    manager.start()
    path = write_agent_config(tmp_path / "agent.yaml", tmp_path / "agent", manager, db_url=db_url, slots=3)
    agent = AgentProcesses(path)
    agent.start()
    yield manager, agent
    agent.stop()
    manager.stop()


def generation() -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": "chain-gen", "run_number": RUN,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "fail_plan": "1:exit"}},
        "events": {"total": EVENTS, "per_job": PER_JOB},
        "output": {"dataset": "/Chain/gen-v1/GEN", "tier": "GEN"},
        "merge": {"min_size_bytes": 1, "max_size_bytes": 1 << 30, "max_events": 2 * PER_JOB, "max_wait_s": 1},
        "retry": {"max_retries": 2, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 1000, "time_s": 300},
    }


def reconstruction() -> dict[str, Any]:
    return {
        "kind": "processing", "name": "chain-reco",
        "payload": {"transformation": "reconstruct", "version": "1", "parameters": {"fail_plan": "0:exit"}},
        "input": {"dataset": "/Chain/gen-v1/GEN"},
        "output": {"dataset": "/Chain/reco-v1/MDST", "tier": "MDST"},
        "merge": {"per_run": True, "min_size_bytes": 1, "max_size_bytes": 1 << 30, "max_wait_s": 1},
        "retry": {"max_retries": 2, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 1000, "time_s": 300},
    }


def run_chain(manager: Manager, agent: AgentProcesses, poll: Any = None) -> None:
    client = manager.client("requester", "tester")
    gen = client.submit(generation()).request
    reco = client.submit(reconstruction()).request
    deadline = time.monotonic() + 280
    while time.monotonic() < deadline:
        if poll:
            poll()
        if client.get(reco.id).state == "closed":
            break
        time.sleep(1.0)
    gen_view, reco_view = client.get(gen.id), client.get(reco.id)
    assert (gen_view.state, reco_view.state) == ("closed", "closed"), (gen_view, reco_view)
    (run,) = client.runs(reco.id)
    assert (run.run, run.state, run.processed_events, run.merged_events) == (RUN, "merged", EVENTS, EVENTS)

    root = agent.config.workdir / "data"
    gen_merged = sorted((root / "merged" / "Chain" / "gen-v1").rglob("*.root"))
    reco_merged = sorted(p for p in (root / "merged" / "Chain" / "reco-v1").rglob("*.root")
                         if not p.name.endswith(".hist.root"))
    generated = run_events(gen_merged)
    assert len(generated) == EVENTS and len(set(generated)) == EVENTS
    assert sorted(run_events(reco_merged)) == sorted(generated)  # every generated event, exactly once
    assert all(f"-run{RUN}-" in p.name for p in reco_merged)
    unmerged_hists = list((root / "unmerged" / "Chain" / "reco-v1").rglob("*.hist.root"))
    merged_hists = list((root / "merged" / "Chain" / "reco-v1").rglob("*.hist.root"))
    assert len(unmerged_hists) == len(gen_merged)  # one reconstruction job per merged GEN file
    want, got = hist_sums(unmerged_hists), hist_sums(merged_hists)
    assert set(want) == set(got) == {"jet_pt", "n_jets"}
    assert all(np.array_equal(want[k], got[k]) for k in want)  # merged bins == sum of unmerged
    shown = json.loads(agent.cli("datasets", "list", "--json").stdout)
    (reco_ds,) = [d["id"] for d in shown if d["name"] == "/Chain/reco-v1/MDST"]
    (per_run,) = json.loads(agent.cli("datasets", "show", str(reco_ds), "--json").stdout)
    assert per_run["run"] == RUN and per_run["gate"] in ("ready", "merged")  # as last copied
    assert per_run["files"]["merged/final"]["events"] == EVENTS
    cli = CliRunner().invoke(prodrequest_cli, ["--url", manager.url, "--token",
                                               manager.token("requester", "tester"), "show", str(reco.id)])
    assert "1 run(s): 1 merged, 0 needing attention" in cli.output, cli.output
    assert "chain (input request first)" in cli.output and client.get(reco.id).producer_id == gen.id
    # parentage across tasks: each merged mDST traces back to the producer's merged files
    gen_lfns = {f.lfn for f in client.files(gen.id, "merged")}
    reco_files = client.files(reco.id, "merged")
    assert reco_files and all(f.parents and set(f.parents) <= gen_lfns for f in reco_files), reco_files
    assert set().union(*(f.parents for f in reco_files)) == gen_lfns
    shown_file = json.loads(agent.cli("files", "show", reco_files[0].lfn, "--json").stdout)
    assert shown_file["derived_from"] == reco_files[0].parents and shown_file["parents"]
    history = client.get(gen.id).history
    gen_closed = max(h.at for h in history if h.to_state == "closed")
    reco_merge_jobs = [p.stat().st_mtime for p in reco_merged]
    assert min(reco_merge_jobs) >= gen_closed  # B's run merged only once A could hand on no more


def test_chained_generation_and_reconstruction(stack: tuple[Manager, AgentProcesses], db_url: str) -> None:
    """On SQLite as it is; on MariaDB with agent components SIGKILLed and restarted mid-way."""
    manager, agent = stack
    victims = [] if db_url.startswith("sqlite") else ["ProdMgrInterface", "MergeSensor", "JobCreator"]
    last = [time.monotonic()]

    def kill_one() -> None:
        if victims and time.monotonic() - last[0] > 4.0:
            name = victims.pop(0)
            state = pidfiles.read_pid(agent.config, name)
            assert state.alive, f"{name} is not running"
            os.kill(state.pid, signal.SIGKILL)
            time.sleep(0.5)
            agent.start(name)
            last[0] = time.monotonic()

    run_chain(manager, agent, poll=kill_one)
    assert not victims, f"the chain ended before all kills: {victims}"
