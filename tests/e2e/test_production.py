"""End to end: a request of real Pythia events through ProdManager and every agent component.

Real processes throughout: `prodmanager serve`, the agent's daemons started by `prodAgentd`,
payloads run by the local executor. Failures of every class are injected; the merged dataset
must hold exactly the requested events, read back from the ROOT files.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uproot

from prodagent.db.schema import pa_file, pa_file_parent, pa_job, pa_job_transition
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.runtime import pidfiles

EVENTS_PER_JOB = 100
JOBS = 8
# One failure of each class on a job's first attempt; job 6 hits a fatal error and is paused.
FAIL_PLAN = "1:exit,2:memory,3:nooutput,4:empty,5:noendofjob,6:fatal"
EXPECTED_CLASS = {1: "PayloadError", 2: "OutOfMemory", 3: "MissingOutput", 4: "EmptyOutput", 5: "NoEndOfJob"}


def workflow(name: str, fail_plan: str = FAIL_PLAN, jobs: int = JOBS, **merge: Any) -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "ecm": 13000.0, "fail_plan": fail_plan}},
        "events": {"total": EVENTS_PER_JOB * jobs, "per_job": EVENTS_PER_JOB},
        "seeds": {"policy": "sequential", "base": 100},
        "output": {"dataset": f"/MinBias/{name}/GEN", "tier": "GEN"},
        "merge": {"enabled": True, "min_size_bytes": 1_000_000, "max_size_bytes": 50_000_000,
                  "max_events": 400, "max_wait_s": 600, **merge},
        "retry": {"max_retries": 3, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 600, "time_s": 300},
        "priority": 1000,
    }


class Production:
    def __init__(self, tmp: Path, agent_db: str | None) -> None:
        self.manager = Manager(tmp / "pm", f"sqlite:///{tmp / 'pm' / 'pm.db'}", lease_s=120)
        self.manager.start()
        self.workdir = tmp / "agent"
        self.agent = AgentProcesses(write_agent_config(tmp / "agent.yaml", self.workdir, self.manager, db_url=agent_db))
        self.engine = sa.create_engine(self.agent.config.db_url)
        self.client = self.manager.client("requester", "tester")

    def close(self) -> None:
        self.agent.stop()
        self.manager.stop()
        self.engine.dispose()

    def jobs(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(pa_job).order_by(pa_job.c.id)))

    def wait(self, request_id: int, timeout: float = 240, on_paused: bool = True, poll=None) -> Any:
        deadline = time.monotonic() + timeout
        resubmitted: set[int] = set()
        while time.monotonic() < deadline:
            if poll:
                poll()
            request = self.client.get(request_id)
            jobs = self.jobs()
            paused = [j.id for j in jobs if j.state == "paused" and j.id not in resubmitted]
            if paused and on_paused:
                out = self.agent.cli("jobs", "resubmit", *map(str, paused))
                assert out.returncode == 0, out.stderr
                resubmitted.update(paused)
            busy = [j for j in jobs if j.state not in ("cleaned", "killed", "exhausted")]
            if request.counters.events_merged >= request.total_events and not busy:
                return request
            time.sleep(1.0)
        states = Counter(j.state for j in self.jobs())
        logs = "\n".join(p.read_text()[-3000:] for p in (self.workdir / "logs").glob("*.log"))
        raise AssertionError(f"production did not finish: jobs {dict(states)}, counters {request.counters}\n{logs}")


def merged_events_on_disk(workdir: Path) -> tuple[int, list[tuple[int, int]]]:
    total, keys = 0, []
    for path in sorted((workdir / "data" / "merged").rglob("*.root")):
        with uproot.open(path) as f:
            tree = f["events"]
            total += tree.num_entries
            arrays = tree.arrays(["run", "event"], library="np")
            keys += list(zip(arrays["run"].tolist(), arrays["event"].tolist(), strict=True))
    return total, keys


def check_exactly_once(prod: Production, request: Any) -> None:
    total, keys = merged_events_on_disk(prod.workdir)
    assert total == request.total_events
    assert len(set(keys)) == total  # no event twice
    with prod.engine.connect() as conn:
        parents = conn.execute(sa.select(pa_file_parent.c.parent_id)).scalars().all()
        unmerged = conn.execute(sa.select(pa_file).where(pa_file.c.kind == "unmerged")).all()
        submits = conn.execute(
            sa.select(pa_job_transition.c.job_id, pa_job_transition.c.retry)
            .where(pa_job_transition.c.to_state == "submitted")
        ).all()
    assert Counter(parents).most_common(1)[0][1] == 1  # no file merged twice
    assert sorted(parents) == sorted(f.id for f in unmerged)  # every file merged
    assert all(f.state == "cleaned" for f in unmerged)
    assert Counter(submits).most_common(1)[0][1] == 1  # no attempt submitted twice
    assert not [p for p in (prod.workdir / "data" / "unmerged").rglob("*") if p.is_file()]
    assert request.counters.events_merged == request.total_events


@pytest.fixture
def production(request, tmp_path) -> Production:
    agent_db = None if request.param == "sqlite" else request.getfixturevalue("make_mysql_db")()
    prod = Production(tmp_path, agent_db)
    yield prod
    prod.close()


@pytest.mark.parametrize("production", ["sqlite", "mariadb"], indirect=True)
def test_production_with_every_failure_class(production: Production) -> None:
    production.agent.start()
    request = production.client.submit(workflow("e2e-failures")).request
    request = production.wait(request.id)
    check_exactly_once(production, request)
    jobs = {j.job_index: j for j in production.jobs() if j.job_type == "production"}
    with production.engine.connect() as conn:
        trail = conn.execute(
            sa.select(pa_job_transition).order_by(pa_job_transition.c.id)
        ).all()
    by_job: dict[int, list[Any]] = {}
    for t in trail:
        by_job.setdefault(t.job_id, []).append(t)
    for index, error_class in EXPECTED_CLASS.items():
        decisions = [t for t in by_job[jobs[index].id] if t.to_state == "cooloff"]
        assert len(decisions) == 1 and decisions[0].reason.startswith(error_class), decisions
    memory_job = jobs[2]
    assert memory_job.memory_mb > 600  # retried with more memory
    fatal = [t.to_state for t in by_job[jobs[6].id]]
    assert "paused" in fatal and "cooloff" not in fatal  # paused for a person, not retried
    clean = [j for i, j in jobs.items() if i not in EXPECTED_CLASS and i != 6]
    assert all(j.retry == 0 for j in clean)
    assert all(j.state == "cleaned" for j in jobs.values())
    archives = list((production.workdir / "logs" / "archive").rglob("*.tar.gz"))
    assert len(archives) >= JOBS
    # The operator's view tells the same story.
    shown = json.loads(production.agent.cli("jobs", "show", str(jobs[2].id), "--json").stdout)
    assert [t["to_state"] for t in shown["transitions"]].count("submitted") == 2
    assert any("OutOfMemory" in (t["reason"] or "") for t in shown["transitions"])
    (dataset,) = json.loads(production.agent.cli("datasets", "list", "--json").stdout)
    assert dataset["events_merged"] == dataset["events_produced"] == request.total_events
    merged = json.loads(production.agent.cli("files", "list", "--kind", "merged", "--json").stdout)
    assert sum(f["events"] for f in merged) == request.total_events
    decisions = json.loads(production.agent.cli("summary", "--json").stdout)["decisions"]
    assert decisions["FatalError"] == {"paused": 1}


KILL_ORDER = ["JobCreator", "JobSubmitter", "JobTracker", "ErrorHandler", "MergeSensor"]


@pytest.mark.parametrize("production", ["sqlite"], indirect=True)
def test_components_killed_and_restarted_mid_production(production: Production) -> None:
    production.agent.start()
    request = production.client.submit(workflow("e2e-kills", fail_plan="1:exit,3:nooutput,5:memory", jobs=16)).request
    config = production.agent.config
    victims = list(KILL_ORDER)
    last = [time.monotonic()]

    def kill_one() -> None:
        if victims and time.monotonic() - last[0] > 2.0:
            name = victims.pop(0)
            state = pidfiles.read_pid(config, name)
            assert state.alive, f"{name} is not running"
            os.kill(state.pid, signal.SIGKILL)
            time.sleep(0.5)
            production.agent.start(name)
            last[0] = time.monotonic()

    request = production.wait(request.id, poll=kill_one)
    assert not victims, f"production ended before all kills: {victims}"
    check_exactly_once(production, request)
    status = json.loads(production.agent.ctl("status", "--json", check=False).stdout)
    assert all(c["alive"] and c["dead_letters"] == 0 for c in status["components"])


@pytest.mark.parametrize("production", ["sqlite"], indirect=True)
def test_aborted_request_is_recalled_and_its_jobs_killed(production: Production) -> None:
    production.agent.start()
    spec = workflow("e2e-abort", fail_plan="")
    spec["payload"] = {"command": ["sh", "-c", "sleep 120"], "version": "1"}
    client = production.manager.client("operator", "e2e-ops")  # command payloads need permission
    request = client.submit(spec).request
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [j for j in production.jobs() if j.state == "running"]
        if len(running) >= 2:
            break
        time.sleep(0.5)
    assert len(running) >= 2
    client.abort(request.id, reason="wrong configuration")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = production.jobs()
        if jobs and all(j.state == "killed" for j in jobs):
            break
        time.sleep(0.5)
    assert {j.state for j in production.jobs()} == {"killed"}
    deadline = time.monotonic() + 20  # the executor sends SIGTERM, then SIGKILL after a grace time
    while _payloads_under(production.workdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _payloads_under(production.workdir) == []
    assert client.get(request.id).state == "aborted"


def _payloads_under(workdir: Path) -> list[int]:
    """Pids of processes whose working directory is inside `workdir` (payloads left running)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd().startswith(str(workdir / "jobs")):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found
