"""End to end: every message of one type is lost, and the production still completes exactly.

For each message type a production publishes, a real stack runs (a `prodmanager serve`, the
agent's daemons started by `prodAgentd`, the JobEmulator as batch system, the agent on SQLite)
while a trigger in the agent's database dead-letters every message of that type the moment it
is published: no consumer ever sees one. The components' reconciliation alone (every
`reconcile_s`, small here) must re-derive the work from the database; the request must end with
exactly its events merged, on the agent and in ProdManager.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodagent.db.schema import ms_dead_letter, pa_file, pa_job
from prodagent.demo.stack import AgentProcesses, Manager, write_agent_config
from prodagent.messaging import types

EVENTS_PER_JOB = 10
JOBS = 6
RECONCILE_S = 1.0
# What a production publishes (KillJobs only on aborts and lost leases; Ping/Pong never).
LOST_TYPES = ["AllocationAcquired", "JobCreated", "JobFailed", "JobSuccess", "RetryJob", "MergeAccepted",
              "ResourcesAvailable"]
EMULATOR = {
    "seed": 3, "duration": {"distribution": "fixed", "value_s": 0.5},
    # Failures enough that JobFailed and RetryJob are published (and lost) in every run.
    "outcomes": [{"probability": 0.4, "exit_code": 1}],
    "slots": 4, "nodes": 2, "output_bytes": 1024,
}


def workflow(name: str) -> dict[str, Any]:
    return {
        "kind": "montecarlo", "name": name,
        "payload": {"transformation": "pythia", "version": "8.317",
                    "parameters": {"process": "minbias", "ecm": 13000.0}},
        "events": {"total": EVENTS_PER_JOB * JOBS, "per_job": EVENTS_PER_JOB},
        "seeds": {"policy": "sequential", "base": 100},
        "output": {"dataset": f"/Lost/{name}/GEN", "tier": "GEN"},
        "merge": {"enabled": True, "min_size_bytes": 1, "max_size_bytes": 1_000_000,
                  "max_events": 3 * EVENTS_PER_JOB, "max_wait_s": 1},
        "retry": {"max_retries": 12, "cooloff": "linear", "base_s": 1},
        "resources": {"memory_mb": 500, "time_s": 300},
        "priority": 1000,
    }


def lose_every(engine: sa.Engine, msg_type: str) -> None:
    """Dead-letter every message of `msg_type` as it is inserted: published, never delivered."""
    assert msg_type in types.AGENT_TYPES
    with engine.begin() as conn:
        conn.exec_driver_sql(f"""
            CREATE TRIGGER lose_{msg_type} AFTER INSERT ON ms_message WHEN NEW.msg_type = '{msg_type}'
            BEGIN
                INSERT INTO ms_dead_letter (id, agent, component, msg_type, payload, priority, source,
                                            created_at, failed_at, deliveries, last_error)
                VALUES (NEW.id, NEW.agent, NEW.component, NEW.msg_type, NEW.payload, NEW.priority,
                        NEW.source, NEW.created_at, NEW.created_at, 0, 'lost on purpose by the test');
                DELETE FROM ms_message WHERE id = NEW.id;
            END""")


@pytest.fixture
def stack(tmp_path: Path):  # type: ignore[no-untyped-def]
    manager = Manager(tmp_path / "pm", f"sqlite:///{tmp_path / 'pm' / 'pm.db'}", lease_s=120)
    manager.start()
    every = {"reconcile_s": RECONCILE_S}
    config = write_agent_config(
        tmp_path / "agent.yaml", tmp_path / "agent", manager, db_url=f"sqlite:///{tmp_path / 'agent.db'}",
        batch={"plugin": "emulator", "options": EMULATOR},
        settings={name: dict(every) for name in ("JobCreator", "JobSubmitter", "ErrorHandler", "MergeSensor",
                                                  "Cleanup")},
    )
    agent = AgentProcesses(config)
    engine = sa.create_engine(agent.config.db_url)
    yield manager, agent, engine
    agent.stop()
    manager.stop()
    engine.dispose()


@pytest.mark.parametrize("lost", LOST_TYPES)
def test_production_completes_with_every_message_of_one_type_lost(stack, lost: str) -> None:  # type: ignore[no-untyped-def]
    manager, agent, engine = stack
    out = agent.cli("db", "upgrade")
    assert out.returncode == 0, out.stderr
    lose_every(engine, lost)
    agent.start()
    client = manager.client("requester", "tester")
    request = client.submit(workflow(f"lost-{lost}")).request

    deadline = time.monotonic() + 240
    while True:
        request = client.get(request.id)
        with engine.connect() as conn:
            jobs = conn.execute(sa.select(pa_job.c.job_type, pa_job.c.state)).all()
        busy = [j for j in jobs if j.state != "cleaned"]
        if request.counters.events_merged >= request.total_events and jobs and not busy:
            break
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in (agent.config.workdir / "logs").glob("*.log"))
            pytest.fail(f"not done with every {lost} lost: jobs {Counter(j.state for j in jobs)}, "
                        f"counters {request.counters}\n{logs}")
        time.sleep(1.0)

    assert request.counters.events_merged == request.total_events == EVENTS_PER_JOB * JOBS
    with engine.connect() as conn:
        dead = Counter(conn.execute(sa.select(ms_dead_letter.c.msg_type)).scalars())
        files = conn.execute(sa.select(pa_file.c.kind, pa_file.c.state, pa_file.c.events)).all()
        retried = conn.execute(sa.select(sa.func.max(pa_job.c.retry))).scalar()
    assert dead[lost] > 0, f"no {lost} was published: the case proves nothing"
    assert set(dead) == {lost}  # nothing else was lost
    assert sum(f.events for f in files if f.kind == "merged") == request.total_events
    assert {f.state for f in files if f.kind == "unmerged"} == {"cleaned"}
    assert retried >= 1  # failures were decided and retried
