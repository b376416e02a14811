"""ProdManager unreachable for longer than an HTTP timeout while an agent runs on SQLite.

A proxy between the agent and ProdManager accepts connections and never answers, so each call
of ProdMgrInterface runs into its HTTP timeout. Meanwhile the rest of the agent keeps working
and the database is never held locked by the waiting component; when ProdManager answers again,
the production completes with exactly the requested events.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.e2e.fault_env import FaultStack, wait_until, workflow

JOBS = 30
OUTAGE_S = 12.0  # several HTTP timeouts (2 s) and retries
PROGRESS_DEADLINE_S = 120.0  # the outage goes on at most this long waiting for held jobs to finish


def test_agent_works_on_while_prodmanager_does_not_answer(tmp_path: Path) -> None:
    db_path = tmp_path / "agent.db"
    stack = FaultStack(tmp_path, f"sqlite:///{db_path}", via_proxy=True)
    try:
        agent = stack.add_agent("agent1", slots=4)
        request = stack.client.submit(workflow("outage", JOBS)).request
        # Black-hole ProdManager while the agent holds work it has not finished, so that it can
        # be seen going on without ProdManager.
        wait_until(lambda: stack.jobs_done() >= 2 and stack.jobs_live() >= 2, 120,
                   "the first jobs to finish, with more in hand")
        before = stack.pids()
        assert all(before.values()), before

        assert stack.proxy is not None
        stack.proxy.blackhole()
        done_at_start = stack.jobs_done()
        writes = 0
        end = time.monotonic() + OUTAGE_S
        give_up = time.monotonic() + PROGRESS_DEADLINE_S
        # At least OUTAGE_S, and on until jobs held at the start finished (a loaded machine is slow).
        while time.monotonic() < end or (stack.jobs_done() <= done_at_start and time.monotonic() < give_up):
            # The database is not held locked while ProdMgrInterface waits on ProdManager: a write
            # transaction of our own gets the lock within the busy timeout, every time.
            conn = sqlite3.connect(db_path, timeout=5.0)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE pa_site SET updated_at = updated_at")
                conn.commit()
                writes += 1
            finally:
                conn.close()
            time.sleep(1.0)
        assert writes >= 5
        # The other components went on: jobs the agent held kept finishing during the outage.
        assert stack.jobs_done() > done_at_start
        log = stack.log_of(agent, "ProdMgrInterface")
        assert log.count("ProdManager unreachable") == 1  # once per outage, not per tick
        stack.proxy.blackhole(False)

        request = stack.wait_request(request.id, timeout=240)
        assert request.counters.events_merged == request.total_events == JOBS * 100
        assert stack.merged_events_in_agents() == request.total_events
        assert "ProdManager reachable again" in stack.log_of(agent, "ProdMgrInterface")
        assert stack.pids() == before  # no component exited (nor was restarted)
    finally:
        stack.close()
