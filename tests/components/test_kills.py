"""Kills are a database fact: a lost KillJobs delays a kill, never loses it, and the batch system
is called with no transaction open.

On SQLite and MariaDB, with the real local executor running a real long-running process: the
operator's `prodagent jobs kill` records the kill (job `killed`, its batch job marked) and
publishes KillJobs; the message is dead-lettered; JobSubmitter's tick still removes the batch
job, holding no database connection while it calls the batch system. The KillJobs handler and
ProdMgrInterface's lost leases record the same way and never call the batch system themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from prodagent.batch.base import BatchJob, BatchState
from prodagent.batch.local import LocalExecutor
from prodagent.batch.local_spool import process_alive
from prodagent.cli.agent_cli import cli
from prodagent.components.job_submitter import JobSubmitter
from prodagent.components.prodmgr_interface import ProdMgrInterface
from prodagent.db.schema import ms_dead_letter, ms_message, pa_allocation
from prodagent.jobs import allocations, states, store
from prodagent.jobs.layout import Layout
from prodagent.messaging import queries as q
from prodagent.runtime.component import Context
from tests.agent_helpers import wait_until, write_config
from tests.components.merge_env import REQUEST, MergeWorld
from tests.components.test_reconcile import add_jobs, move


class WatchedLocal(LocalExecutor):
    """The local executor, noting the database connections in use at each kill."""

    def __init__(self, workdir: Path, engine: sa.Engine) -> None:
        super().__init__(LocalExecutor.Options(slots=4, kill_grace_s=1), workdir)
        self.engine = engine
        self.in_use_at_kill: list[int] = []
        self.killed: list[list[str]] = []

    def kill(self, job_ids: Iterable[str]) -> None:
        self.in_use_at_kill.append(self.engine.pool.checkedout())
        ids = list(job_ids)
        self.killed.append(ids)
        super().kill(ids)


def running_in_batch(world: MergeWorld, plugin: LocalExecutor, n: int) -> list[tuple[int, str, tuple[int, float]]]:
    """`n` jobs submitted to the local executor as real `sleep 600` processes, recorded as running:
    (job id, batch name, (payload pid, its start time))."""
    ids = add_jobs(world, n)
    made = []
    for job in (world.job(i) for i in ids):
        name = Layout.batch_name(job.name, job.retry)
        plugin.submit([BatchJob(name, ["sh", "-c", "sleep 600"], Path(job.workdir) / "attempt-0")])
        made.append((job.id, name))
    move(world, ids, states.SUBMITTED, states.RUNNING)
    out = []
    for job_id, name in made:
        wait_until(lambda n=name: plugin.query([n])[n].state is BatchState.RUNNING, 30, what=f"{name} running")
        started = wait_until(lambda n=name: _read(plugin.spool.started_path(plugin.spool.key(n))), 30,
                             what=f"{name} started")
        out.append((job_id, name, (int(started["pid"]), float(started["create_time"]))))
    return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def kill_marks(world: MergeWorld) -> dict[int, bool]:
    rows = world.tx(lambda conn: conn.execute(sa.text("SELECT id, kill_pending_at FROM pa_job")).all())
    return {r.id: r.kill_pending_at is not None for r in rows}


def dead_letter_all(world: MergeWorld, msg_type: str) -> int:
    """Move every queued message of `msg_type` to the dead letters, as a message lost for good."""
    def work(conn: sa.Connection) -> int:
        ids = list(conn.execute(sa.select(ms_message.c.id).where(ms_message.c.msg_type == msg_type)).scalars())
        if ids:
            conn.execute(q.copy_to_dead_letters(ids, time.time(), "lost on purpose"))
            conn.execute(*q.delete_messages(ids, conn.dialect.name != "sqlite"))
        return len(ids)
    return world.tx(work)


def operator_config(world: MergeWorld, tmp_path: Path) -> Path:
    return write_config(tmp_path / "operator.yaml", {
        "agent": {"name": "mt", "workdir": str(world.config.workdir)},
        "database": {"url": world.config.database.url},
    })


def test_an_operator_kill_whose_message_is_lost_still_removes_the_batch_job(world: MergeWorld, tmp_path: Path) -> None:
    plugin = WatchedLocal(tmp_path / "batch", world.service.engine)
    (victim, name, pid), (spared, _n, spared_pid) = running_in_batch(world, plugin, 2)

    result = CliRunner().invoke(cli, ["--config", str(operator_config(world, tmp_path)), "jobs", "kill", str(victim)])
    assert result.exit_code == 0, result.output
    assert "KillJobs: 1 job(s)" in result.output
    # The kill is recorded at once, with the message as the fast path only.
    assert world.job(victim).state == states.KILLED and kill_marks(world)[victim]
    assert world.job(spared).state == states.RUNNING and not kill_marks(world)[spared]
    assert dead_letter_all(world, "KillJobs") == 1
    assert world.tx(lambda c: c.execute(sa.select(ms_dead_letter.c.component)).scalars().all()) == ["JobSubmitter"]

    submitter = world.component(JobSubmitter)
    submitter.plugin = plugin
    try:
        submitter.tick(None)  # as the runner calls it, with no message ever delivered
        submitter.tick(None)  # the mark is cleared: the batch system is not asked again
    finally:
        submitter.teardown()

    assert plugin.killed == [[name]]
    assert plugin.in_use_at_kill == [0]  # no connection held, so no transaction, during the kill call
    assert not kill_marks(world)[victim]
    final = wait_until(lambda: (s := plugin.query([name])[name]).state is BatchState.FAILED and s, 30,
                       what="the batch job cancelled")
    assert final.error_class == "CANCELLED"
    wait_until(lambda: not process_alive(*pid), 30, what="the payload process gone")
    assert process_alive(*spared_pid) and plugin.query([_n])[_n].state is BatchState.RUNNING
    assert world.job(victim).state == states.KILLED
    plugin.kill([_n])


def test_the_kill_jobs_handler_records_and_the_tick_calls_the_batch_system(world: MergeWorld, tmp_path: Path) -> None:
    plugin = WatchedLocal(tmp_path / "batch", world.service.engine)
    ((running, name, pid),) = running_in_batch(world, plugin, 1)
    created, cooling = add_jobs(world, 2)
    move(world, [cooling], states.SUBMITTED, states.JOBFAILED, states.COOLOFF)
    submitter = world.component(JobSubmitter)
    submitter.plugin = plugin
    try:
        payload = {"job_ids": [running, created, cooling], "reason": "test kill"}
        assert world.call(submitter.on_kill, payload) == []
        assert plugin.killed == [] and submitter.tick_now  # the handler never calls the batch system
        assert world.call(submitter.on_kill, payload) == []  # a second delivery changes nothing
        assert {world.job(i).state for i in (running, created, cooling)} == {states.KILLED}
        # A job still created may be on its way into the batch system: marked too; a cool-off has none.
        assert kill_marks(world) == {running: True, created: True, cooling: False}
        submitter.tick(None)
    finally:
        submitter.teardown()

    assert sorted(plugin.killed[0]) == sorted([name, Layout.batch_name(world.job(created).name, 0)])
    assert plugin.in_use_at_kill == [0]
    assert not any(kill_marks(world).values())
    wait_until(lambda: not process_alive(*pid), 30, what="the payload process gone")
    reasons = {t.reason for t in world.tx(lambda c: store.history(c, running)) if t.to_state == states.KILLED}
    assert reasons == {"test kill"}


def test_a_lost_lease_kills_its_jobs_in_the_recording_transaction(world: MergeWorld) -> None:
    now = time.time()
    world.tx(lambda conn: conn.execute(pa_allocation.insert().values(
        id="9.1", pm_id=9, lease_epoch=1, agent="mt", request_id=REQUEST, request_name="merge-test",
        lease_token="t", lease_expires_at=now + 60, workflow=json.dumps(world.workflow),
        state=allocations.ACTIVE, acquired_at=now, updated_at=now)))
    running, done = add_jobs(world, 2, allocation_id="9.1")
    move(world, [running], states.SUBMITTED, states.RUNNING)
    move(world, [done], states.SUBMITTED, states.SUCCESS)
    interface = ProdMgrInterface(world.config, world.service)  # no setup: no ProdManager is called here
    (alloc,) = world.tx(lambda conn: allocations.allocations_in(conn, "mt", allocations.HELD))

    def record(conn: sa.Connection) -> list[Any]:
        ctx = Context(conn)
        interface._record_renewal(ctx, {}, [(alloc, allocations.LOST)])
        world.service.publish_many(conn, ctx.outbox, source=interface.name)
        return ctx.outbox

    (wake,) = world.tx(record)
    assert world.tx(record) == []  # already lost: nothing more

    assert world.job(running).state == states.KILLED and kill_marks(world)[running]
    assert world.job(done).state == states.SUCCESS and not kill_marks(world)[done]
    assert (wake.msg_type, wake.payload["job_ids"]) == ("KillJobs", [running])
    assert world.tx(lambda conn: store.pending_kills(conn, "mt"))[0].id == running
