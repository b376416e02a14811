"""JobTracker's set of jobs in the batch system, kept from the transitions (on SQLite and a real
MariaDB): jobs entering and leaving are followed without reading the set whole again; a
transition committed under a lower id than one already read (its transaction was still open) is
still found; another agent's jobs never enter; a change made with no transition at all shows
at the next whole read."""

from __future__ import annotations

import time

from prodagent.components.job_tracker import ACTIVE_COLUMNS
from prodagent.db.engine import make_engine
from prodagent.db.migrate import upgrade
from prodagent.db.schema import pa_job, pa_job_transition
from prodagent.jobs import states, store
from prodagent.jobs.active_set import ActiveSet


def _job(i: int, agent: str = "a") -> dict:
    return {"agent": agent, "name": f"{agent}-job-{i}", "job_type": "production", "workdir": f"/tmp/j{i}",
            "request_id": "1", "dataset_id": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_set_follows_transitions_and_late_commits(db_url) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    clock = Clock()
    active = ActiveSet("a", states.IN_BATCH, ACTIVE_COLUMNS, resync_s=60.0, clock=clock, key=lambda row: row.name)

    def names() -> set[str]:
        with engine.begin() as conn:
            rows = active.refresh(conn)
        assert active.keyed == {row.name: row for row in rows}  # the keyed view follows every change
        return {row.name for row in rows}

    with engine.begin() as conn:
        mine = store.insert_jobs(conn, [_job(i) for i in range(4)], reason="test")
        theirs = store.insert_jobs(conn, [_job(i, "b") for i in range(2)], reason="test")
        store.transition(conn, mine[:2] + theirs, states.SUBMITTED, "go")
    assert names() == {"a-job-0", "a-job-1"} and active.full_reads == 1

    with engine.begin() as conn:  # one enters, one runs, one leaves
        store.transition(conn, [mine[2]], states.SUBMITTED, "go")
        store.transition(conn, [mine[0]], states.RUNNING, "running")
        store.transition(conn, [mine[1]], states.KILLED, "killed")
    assert names() == {"a-job-0", "a-job-2"} and active.full_reads == 1
    assert {r.id: r.state for r in active.jobs.values()}[mine[0]] == states.RUNNING

    # A transaction took id n+1 but commits after another one's n+2 was read: n+1 is a gap,
    # looked for again until it shows.
    with engine.begin() as conn:
        newest = store.newest_transition_id(conn)
        conn.execute(pa_job.update().where(pa_job.c.id == mine[3]).values(state=states.SUBMITTED))
        conn.execute(pa_job_transition.insert().values(id=newest + 2, job_id=mine[0], from_state="running",
                                                       to_state="running", at=time.time(), retry=0))
    assert names() == {"a-job-0", "a-job-2"} and newest + 1 in active.gaps
    with engine.begin() as conn:
        conn.execute(pa_job_transition.insert().values(id=newest + 1, job_id=mine[3], from_state="created",
                                                       to_state="submitted", at=time.time(), retry=0))
    assert names() == {"a-job-0", "a-job-2", "a-job-3"} and not active.gaps and active.full_reads == 1

    # A change with no transition (nothing in the agent does that) shows at the next whole read.
    with engine.begin() as conn:
        conn.execute(pa_job.update().where(pa_job.c.id == mine[2]).values(state=states.SUCCESS))
    assert "a-job-2" in names()
    clock.now += 61.0
    assert names() == {"a-job-0", "a-job-3"} and active.full_reads == 2
    with engine.connect() as conn:
        assert sorted(r.id for r in store.jobs_in(conn, "a", states.IN_BATCH)) == sorted(active.jobs)
    engine.dispose()


def test_gaps_are_given_up_after_a_while(db_url) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    clock = Clock()
    active = ActiveSet("a", states.IN_BATCH, ACTIVE_COLUMNS, resync_s=600.0, gap_keep_s=30.0, clock=clock)
    with engine.begin() as conn:
        [job] = store.insert_jobs(conn, [_job(0)], reason="test")
        active.refresh(conn)
        newest = store.newest_transition_id(conn)
        conn.execute(pa_job_transition.insert().values(id=newest + 5, job_id=job, from_state="created",
                                                       to_state="created", at=time.time(), retry=0))
    with engine.begin() as conn:
        active.refresh(conn)
    assert sorted(active.gaps) == [newest + 1, newest + 2, newest + 3, newest + 4]
    clock.now += 31.0
    with engine.begin() as conn:
        active.refresh(conn)
    assert active.gaps == {} and active.cursor == newest + 5
    engine.dispose()
