"""JobCreator's RetryJob: a job whose next attempt cannot be built fails alone."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from prodagent.components.job_creator import JobCreator
from prodagent.db.schema import pa_job, pa_job_transition
from prodagent.jobs import states
from tests.components.merge_env import MergeWorld
from tests.components.test_reconcile import add_jobs, move


def test_a_retry_that_cannot_be_built_is_paused_alone(world: MergeWorld) -> None:
    good, bad = add_jobs(world, 2)
    move(world, [good, bad], states.SUBMITTED, states.JOBFAILED, states.COOLOFF)
    # The bad job belongs to a request this agent holds no workflow for: its attempt cannot be built.
    world.tx(lambda conn: conn.execute(pa_job.update().where(pa_job.c.id == bad).values(request_id="999")))
    creator = world.component(JobCreator)

    out = world.call(creator.on_retry, {"job_ids": [good, bad], "reason": "retry"})

    assert [(m.msg_type, m.payload) for m in out] == [("JobCreated", {"job_ids": [good]})]
    retried = world.job(good)
    assert (retried.state, retried.retry) == (states.CREATED, 1)
    assert (Path(retried.workdir) / "attempt-1" / "job.json").is_file()
    held = world.job(bad)
    assert (held.state, held.retry) == (states.PAUSED, 0)  # the savepoint undid its move to created
    reason = world.tx(lambda conn: conn.execute(
        sa.select(pa_job_transition.c.reason).where(pa_job_transition.c.job_id == bad)
        .order_by(pa_job_transition.c.id.desc()).limit(1)).scalar())
    assert "next attempt cannot be built" in reason and "request 999" in reason
    # A second delivery changes nothing.
    assert world.call(creator.on_retry, {"job_ids": [good, bad], "reason": "retry"}) == []
