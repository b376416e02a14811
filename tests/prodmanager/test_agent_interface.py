"""ProdMgrInterface against a real ProdManager over HTTP (ProdManager on SQLite and MariaDB, the
agent on SQLite): leases recorded one row per lease and announced, unrunnable allocations
released as failed with their reason, merged files refused by ProdManager recorded as refused,
ProdManager unreachable waited out without an exception; and the agent's allocation state table."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prodagent.components.prodmgr_interface import ProdMgrInterface
from prodagent.db.schema import ms_message, pa_allocation, pa_dataset, pa_file, pa_job
from prodagent.errors import IllegalTransition
from prodagent.jobs import allocations as allocs
from prodagent.jobs import store
from prodmanager.client import ProdManagerClient
from tests.prodmanager.conftest import AGENT, Server, free_port, make_interface, mc_workflow, submit


def rows(pmi: ProdMgrInterface, query: Any) -> list[Any]:
    return pmi.service.tx.run(lambda conn: list(conn.execute(query)))


def test_leases_recorded_announced_and_unrunnable_given_up(interface: ProdMgrInterface, server: Server) -> None:
    rid = submit(server.env, "alice", mc_workflow("iface", 300, 100))
    interface.tick()
    recorded = rows(interface, sa.select(pa_allocation).order_by(pa_allocation.c.pm_id))
    assert len(recorded) == 3 and {a.state for a in recorded} == {"acquired"}
    assert all(a.id == f"{a.pm_id}.{a.lease_epoch}" and a.lease_epoch == 1 for a in recorded)
    [(announced,)] = rows(interface, sa.select(ms_message.c.payload).where(ms_message.c.msg_type == "AllocationAcquired"))
    assert sorted(json.loads(announced)["allocation_ids"]) == sorted(a.id for a in recorded)
    interface.tick()  # a second tick records nothing twice
    assert len(rows(interface, sa.select(pa_allocation))) == 3

    poison = recorded[0]
    interface.service.tx.run(lambda conn: allocs.move(
        conn, [poison.id], allocs.UNRUNNABLE, reason="payload.parameters.ecm: not a number\n\x1b[31m"))
    interface.tick()
    [after] = rows(interface, sa.select(pa_allocation).where(pa_allocation.c.id == poison.id))
    assert after.state == "failed"
    with ProdManagerClient(server.url, server.env.tokens["ops"]) as ops:
        [remote] = [a for a in ops.allocations(rid) if a.allocation_id == poison.pm_id]
    assert remote.state == "failed" and remote.reason.startswith("payload.parameters.ecm: not a number")


def test_acquire_counts_the_jobs_of_allocations_not_cut_yet(
        interface: ProdMgrInterface, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("prodrequest.spec.MAX_ALLOCATIONS", 10)  # 100 jobs: 10 per allocation
    submit(server.env, "alice", mc_workflow("packed", 1000, 10))
    interface.service.tx.run(lambda conn: store.upsert_site(conn, AGENT, "local", 12, 0, 0))  # capacity 24
    interface.tick()
    recorded = rows(interface, sa.select(pa_allocation.c.id, pa_allocation.c.n_jobs))
    assert sorted(n for _id, n in recorded) == [10, 10, 10]  # ceil(24 / 10) allocations, not 24
    assert interface.transaction(lambda ctx: allocs.jobs_waiting(ctx.conn, AGENT)) == 30
    # ProdManager would now give more (a larger capacity than the agent registered), but the
    # 30 jobs of the uncut allocations wait already: the agent does not ask.
    with ProdManagerClient(server.url, server.env.tokens["agent1"]) as agent:
        agent.register_agent(AGENT, ["local"], 1000)
    interface.tick()
    assert len(rows(interface, sa.select(pa_allocation))) == 3

    # An allocation cut in part (per_job auto cuts in steps): its jobs count once.
    first = recorded[0][0]
    now = time.time()
    jobs = [{"agent": AGENT, "name": f"j{k}", "job_type": "production", "allocation_id": first,
             "request_id": "1", "state": "created", "workdir": "/nonexistent", "created_at": now,
             "updated_at": now} for k in range(4)]
    interface.service.tx.run(lambda conn: conn.execute(pa_job.insert(), jobs))
    assert interface.transaction(lambda ctx: allocs.jobs_waiting(ctx.conn, AGENT)) == 30
    interface.service.tx.run(lambda conn: conn.execute(
        pa_job.update().where(pa_job.c.name.in_(["j0", "j1"])).values(state="success")))
    assert interface.transaction(lambda ctx: allocs.jobs_waiting(ctx.conn, AGENT)) == 28
    interface.service.tx.run(lambda conn: allocs.move(conn, [first], allocs.ACTIVE))  # all cut: 2 live jobs
    assert interface.transaction(lambda ctx: allocs.jobs_waiting(ctx.conn, AGENT)) == 22


def test_a_refused_merged_file_is_recorded_as_refused(interface: ProdMgrInterface, server: Server) -> None:
    rid = submit(server.env, "alice", mc_workflow("refused", 100, 100))
    interface.tick()

    def fake_merge(conn: sa.Connection) -> None:
        now = time.time()
        dataset = conn.execute(pa_dataset.insert().values(
            agent=AGENT, name="/X/refused/GEN", tier="GEN", request_id=str(rid), merge_policy="{}", created_at=now
        )).inserted_primary_key[0]
        job = conn.execute(pa_job.insert().values(
            agent=AGENT, name="m1", job_type="merge", request_id=str(rid), dataset_id=dataset, state="success",
            workdir="/nonexistent", created_at=now, updated_at=now)).inserted_primary_key[0]
        conn.execute(pa_file.insert(), [
            {"lfn": "/store/unmerged/never-reported.root", "pfn": "/x", "dataset_id": dataset, "job_id": job,
             "kind": "unmerged", "state": "merged", "size": 1, "adler32": "00000001", "events": 100,
             "merge_job_id": job, "created_at": now},
            {"lfn": "/store/merged/m1.root", "pfn": "/y", "dataset_id": dataset, "job_id": job, "kind": "merged",
             "state": "final", "size": 1, "adler32": "00000001", "events": 100, "merge_job_id": None,
             "created_at": now},
        ])

    interface.service.tx.run(fake_merge)
    interface.tick()
    [merged] = rows(interface, sa.select(pa_file).where(pa_file.c.kind == "merged"))
    assert merged.reported is False or merged.reported == 0  # not passed off as reported
    assert merged.report_error and "never-reported" in merged.report_error
    interface.tick()  # refused once, not retried for ever
    assert rows(interface, sa.select(pa_file.c.report_error).where(pa_file.c.kind == "merged")) == [
        (merged.report_error,)]


def test_a_completion_whose_answer_was_lost_is_not_taken_for_a_lost_lease(
        interface: ProdMgrInterface, server: Server) -> None:
    """ProdManager records a completion and dies before answering: when it is back, the renewal
    says the allocation was finished under this very lease, and the agent completes it again
    (answered as the first time) instead of voiding its work as lost."""
    submit(server.env, "alice", mc_workflow("answer-lost", 100, 100))
    interface.tick()
    [alloc] = rows(interface, sa.select(pa_allocation))
    now = time.time()
    job = {"agent": AGENT, "name": "done-job", "job_type": "production", "allocation_id": alloc.id,
           "request_id": "1", "state": "success", "events_done": 100, "workdir": "/nonexistent",
           "created_at": now, "updated_at": now}
    interface.service.tx.run(lambda conn: conn.execute(pa_job.insert().values(**job)))
    interface.service.tx.run(lambda conn: allocs.move(conn, [alloc.id], allocs.ACTIVE))
    with ProdManagerClient(server.url, server.env.tokens["agent1"]) as agent:  # the call whose answer was lost
        agent.complete(AGENT, (int(alloc.pm_id), alloc.lease_token), 100)
        [renewed] = agent.renew(AGENT, [(int(alloc.pm_id), alloc.lease_token)])
        assert renewed.status == "finished"
        [stranger] = agent.renew(AGENT, [(int(alloc.pm_id), "not-the-lease")])
        assert stranger.status == "expired"
    interface.next_renew = 0.0
    interface.tick()
    [after] = rows(interface, sa.select(pa_allocation))
    assert after.state == "done", after


def test_prodmanager_unreachable_is_waited_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pmi = make_interface(tmp_path, f"http://127.0.0.1:{free_port()}", "no-server")
    try:
        with caplog.at_level(logging.WARNING, logger="prodagent.ProdMgrInterface"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pmi.tick()  # never raises
                time.sleep(0.05)
        assert pmi.outage.since is not None
        assert sum("ProdManager unreachable" in r.getMessage() for r in caplog.records) == 1
    finally:
        pmi.teardown()
        pmi.service.engine.dispose()


def test_allocation_state_table() -> None:
    assert allocs.allowed_from(allocs.DONE) == {allocs.ACTIVE}
    assert allocs.allowed_from(allocs.FAILED) == {allocs.ACTIVE, allocs.UNRUNNABLE, allocs.UNSUPPORTED}
    assert {allocs.DONE, allocs.FAILED, allocs.LOST, allocs.RECALLED, allocs.RELEASED} == allocs.FINAL
    with pytest.raises(IllegalTransition):
        allocs.allowed_from("finished")


def test_state_changes_follow_the_table(tmp_path: Path) -> None:
    pmi = make_interface(tmp_path, "http://127.0.0.1:9", "x")
    now = time.time()
    row = {"agent": AGENT, "request_id": "1", "request_name": "r", "lease_token": "t", "lease_expires_at": now,
           "workflow": "{}", "acquired_at": now, "updated_at": now}

    def work(conn: sa.Connection) -> list[Any]:
        allocs.insert(conn, [{**row, "id": "1.1", "pm_id": 1, "lease_epoch": 1, "state": "acquired"},
                             {**row, "id": "2.1", "pm_id": 2, "lease_epoch": 1, "state": "lost"}])
        moved = [allocs.move(conn, ["1.1", "2.1"], allocs.ACTIVE),  # lost is final: only 1.1 moves
                 allocs.move(conn, ["1.1"], allocs.ACTIVE),  # already there: a repeat changes nothing
                 allocs.move(conn, ["1.1"], allocs.ACQUIRED)]  # no way back
        return [*moved, sorted(conn.execute(sa.select(pa_allocation.c.id, pa_allocation.c.state)).all())]

    try:
        assert pmi.service.tx.run(work) == [["1.1"], [], [], [("1.1", "active"), ("2.1", "lost")]]
    finally:
        pmi.teardown()
        pmi.service.engine.dispose()
