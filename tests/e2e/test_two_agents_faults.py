"""Two agents on one MariaDB database, one ProdManager, faults of the pull protocol.

- ProdManager killed (SIGKILL) and kept down for 30 s, then started again on its port: no
  component of either agent exits, and the production completes with exactly its events.
- One agent's ProdMgrInterface frozen (SIGSTOP) past its leases, then woken: the leases it lost
  go to the other agent once each (no re-leasing for ever), their outputs in the frozen agent
  are neither merged nor reported, and ProdManager's merged events equal the requested ones.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from prodagent.db.schema import pa_allocation, pa_file
from prodagent.runtime import pidfiles
from tests.e2e.fault_env import FaultStack, wait_until, workflow

JOBS = 40


@pytest.fixture
def stack(tmp_path: Path, make_mysql_db: Callable[[], str]) -> Iterator[FaultStack]:
    made = FaultStack(tmp_path, make_mysql_db(), lease_s=60.0)
    yield made
    made.close()


def test_prodmanager_down_for_30_s(stack: FaultStack) -> None:
    stack.add_agent("agent1")
    stack.add_agent("agent2")
    request = stack.client.submit(workflow("pm-down", JOBS)).request
    wait_until(lambda: stack.jobs_done() >= 4, 120, "the first jobs to finish")
    before = stack.pids()
    assert all(before.values()), before

    stack.kill_manager()
    down_until = time.monotonic() + 30.0
    while time.monotonic() < down_until:
        assert stack.pids() == before, "a component exited while ProdManager was down"
        time.sleep(2.0)
    stack.manager.start()  # same port, same database

    request = stack.wait_request(request.id, timeout=150)  # within pytest's timeout: its report shows
    assert request.counters.events_merged == request.total_events == JOBS * 100
    assert stack.merged_events_in_agents() == request.total_events
    assert stack.pids() == before  # nobody exited, nobody had to be restarted
    for agent in stack.agents:
        log = stack.log_of(agent, "ProdMgrInterface")
        assert 1 <= log.count("ProdManager unreachable") <= 2, log[-3000:]  # per outage, not per tick


def test_prodmgr_interface_frozen_past_its_leases(stack: FaultStack) -> None:
    lease = {"lease_s": 6.0}
    frozen = stack.add_agent("agent1", pmi=lease)
    request = stack.client.submit(workflow("frozen", JOBS)).request
    held = wait_until(lambda: _held(stack, "agent1"), 120, "agent1 to hold allocations")
    assert held
    pid = pidfiles.read_pid(frozen.config, "ProdMgrInterface").pid
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        stack.add_agent("agent2", pmi=lease)
        time.sleep(20.0)  # well past agent1's 6 s leases; agent2 takes them over
    finally:
        os.kill(pid, signal.SIGCONT)

    request = stack.wait_request(request.id, timeout=150)  # within pytest's timeout: its report shows
    assert request.counters.events_merged == request.total_events == JOBS * 100
    # Woken, agent1 learns its leases are gone (the request may be closed by then).
    wait_until(lambda: not _held(stack, "agent1"), 60, "agent1 to settle the leases it lost")
    # What the agents reported merged adds up to the request: no lost lease's output counted.
    assert stack.merged_events_in_agents() == request.total_events
    with stack.engine.connect() as conn:
        lost = conn.execute(sa.select(pa_allocation.c.id).where(
            pa_allocation.c.agent == "agent1", pa_allocation.c.state == "lost")).scalars().all()
        refused = conn.execute(sa.select(pa_file.c.lfn, pa_file.c.report_error).where(
            pa_file.c.report_error.is_not(None))).all()
        unfinished = conn.execute(sa.select(pa_allocation.c.agent, pa_allocation.c.id, pa_allocation.c.state)
                                  .where(pa_allocation.c.state.in_(["acquired", "active"]))).all()
    assert lost, stack.allocation_states()  # the freeze did cost agent1 its leases
    assert refused == []  # nothing merged that ProdManager had to refuse
    assert unfinished == []
    epochs = [a.lease_epoch for a in stack.client.allocations(request.id)]
    assert len(epochs) == JOBS and max(epochs) <= 3, sorted(epochs)  # re-leased once, not for ever


def _held(stack: FaultStack, agent: str) -> int:
    with stack.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            pa_allocation.c.agent == agent, pa_allocation.c.state.in_(["acquired", "active"]))).scalar() or 0)
