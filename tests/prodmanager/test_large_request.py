"""A request of 1,000,000 jobs: accepted, split into at most MAX_ALLOCATIONS allocations of
several jobs each, and its first allocations become the right jobs in the agent."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from prodmanager.db import schema as pm_schema
from prodmanager.models import AcquireRequest
from prodrequest.loader import validate_workflow
from prodrequest.spec import MAX_ALLOCATIONS, MAX_JOBS
from tests.prodmanager.conftest import Env, mc_workflow, submit
from tests.prodmanager.test_pull import register
from tests.test_accepted_runnable import AGENT, Agent


def test_a_million_jobs_in_bounded_allocations(env: Env, tmp_path: Path) -> None:
    doc = mc_workflow("million", 2 * MAX_JOBS, 2, seeds={"policy": "sequential", "base": 7})
    workflow = validate_workflow(doc)
    assert workflow.jobs == MAX_JOBS == 1_000_000
    rid = submit(env, "alice", doc)
    alloc = pm_schema.allocation
    count, first, last = env.db.read(lambda conn: conn.execute(
        sa.select(sa.func.count(), sa.func.min(alloc.c.first_event), sa.func.max(alloc.c.job_index))
        .where(alloc.c.request_id == rid)).one())
    assert count == MAX_ALLOCATIONS
    assert (first, last) == (0, MAX_JOBS - 10)  # 10 jobs per allocation
    assert env.requests.get(env.who("alice"), rid).total_jobs == MAX_JOBS

    register(env, AGENT, "agent1", capacity=30)
    leased = env.pull.acquire(env.who("agent1"), AGENT, AcquireRequest(jobs=25)).allocations
    assert [(a.job_index, a.first_event, a.n_events, a.n_jobs, a.seed) for a in leased] == [
        (0, 0, 20, 10, 7), (10, 20, 20, 10, 17), (20, 40, 20, 10, 27)]  # jobs counted, not rows
    assert env.pull.acquire(env.who("agent1"), AGENT, AcquireRequest()).allocations == []  # 30 held

    agent = Agent(tmp_path, f"sqlite:///{tmp_path / 'agent.db'}")
    try:
        agent.create(agent.record(leased))
        jobs = agent.jobs()
    finally:
        agent.close()
    assert [(j.job_index, j.first_event, j.n_events, j.seed) for j in jobs] == [
        (i, 2 * i, 2, 7 + i) for i in range(30)]


def test_more_jobs_than_the_limit_are_refused() -> None:
    from prodrequest.loader import WorkflowInvalid

    try:
        validate_workflow(mc_workflow("too_many", MAX_JOBS + 1, 1))
    except WorkflowInvalid as exc:
        assert any("more than the limit" in e.message for e in exc.errors), exc.errors
    else:
        raise AssertionError("accepted a request of more than MAX_JOBS jobs")
