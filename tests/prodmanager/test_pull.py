"""The pull protocol against the services (one process, SQLite and MariaDB): acquire under
leases, renew, report, complete, release, recall, priorities, sites, capacity, counters."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from prodmanager.db import schema as pm_schema
from prodmanager.errors import Conflict, Forbidden, InvalidInput, LeaseLost, NotFound
from prodmanager.models import (
    AcquireRequest,
    AgentRegistration,
    Allocation,
    CompleteItem,
    CompleteMany,
    CompleteReport,
    LeaseRef,
    MergedFile,
    MergedReport,
    OutputFile,
    ProgressReport,
    ReleaseRequest,
    RenewRequest,
)
from tests.prodmanager.conftest import LEASE_S, Env, mc_workflow, submit


def register(
    env: Env,
    agent: str = "a1",
    token: str = "agent1",
    capacity: int = 100,
    sites: list[str] | None = None,
) -> None:
    env.pull.register(
        env.who(token), AgentRegistration(name=agent, sites=sites or [], capacity=capacity)
    )


def acquire(env: Env, agent: str = "a1", token: str = "agent1", **kw: int) -> list[Allocation]:
    return env.pull.acquire(env.who(token), agent, AcquireRequest(**kw)).allocations


def complete(
    env: Env,
    a: Allocation,
    agent: str = "a1",
    token: str = "agent1",
    files: list[OutputFile] | None = None,
) -> None:
    env.pull.complete(
        env.who(token),
        agent,
        a.allocation_id,
        CompleteReport(lease_token=a.lease_token, events_done=a.n_events, files=files or []),
    )


def out(a: Allocation, size: int = 1000) -> OutputFile:
    return OutputFile(
        lfn=f"/store/unmerged/{a.request_name}/{a.job_index}.e{a.lease_epoch}.root",
        size=size,
        checksum="adler32:00000001",
        events=a.n_events,
    )


def test_allocation_carries_what_the_agent_needs(env: Env) -> None:
    rid = submit(
        env,
        "alice",
        mc_workflow("carry", 1050, 100, seeds={"policy": "sequential", "base": 500}, run_number=77),
    )
    register(env)
    allocs = acquire(env, jobs=20)
    assert [a.first_event for a in allocs] == list(range(0, 1050, 100))
    assert [a.n_events for a in allocs] == [100] * 10 + [50]
    assert [a.seed for a in allocs] == list(range(500, 511))
    a = allocs[0]
    assert (a.request_id, a.request_name, a.kind, a.run_number, a.lease_epoch) == (
        rid,
        "carry",
        "montecarlo",
        77,
        1,
    )
    assert a.spec["payload"]["transformation"] == "pythia" and a.spec["events"]["per_job"] == 100
    assert len(a.lease_token) == 32 and a.lease_expires == pytest.approx(
        time.time() + LEASE_S, abs=1
    )


def test_processing_allocations_are_file_groups(env: Env) -> None:
    from prodrequest.loader import validate_workflow

    files = [{"lfn": f"/store/raw/f{i}.raw", "events": 10 + i} for i in range(5)]
    doc = {
        "kind": "processing",
        "name": "reco1",
        "payload": {"transformation": "reconstruct", "version": "1"},
        "input": {"files": files, "files_per_job": 2},
        "output": {"dataset": "/Run1/reco-v1/DST", "tier": "DST"},
    }
    assert env.requests.submit(env.who("alice"), validate_workflow(doc)).created
    register(env)
    allocs = acquire(env)
    assert [[f.lfn for f in a.input_files] for a in allocs] == [
        ["/store/raw/f0.raw", "/store/raw/f1.raw"],
        ["/store/raw/f2.raw", "/store/raw/f3.raw"],
        ["/store/raw/f4.raw"],
    ]
    assert [a.n_events for a in allocs] == [21, 25, 14]
    assert "files" not in allocs[0].spec["input"] and allocs[0].spec["input"]["files_per_job"] == 2


def test_priority_then_age_order(env: Env) -> None:
    low = submit(env, "alice", mc_workflow("low", 300, 100, priority=10))
    high_old = submit(env, "bob", mc_workflow("high_old", 300, 100, priority=500))
    high_new = submit(env, "alice", mc_workflow("high_new", 300, 100, priority=500))
    top = submit(env, "bob", mc_workflow("top", 200, 100, priority=900))
    register(env)
    order = [a.request_id for a in acquire(env, jobs=2)] + [
        a.request_id for a in acquire(env, jobs=100)
    ]
    assert order == [top] * 2 + [high_old] * 3 + [high_new] * 3 + [low] * 3


def test_capacity_caps_what_an_agent_holds(env: Env) -> None:
    submit(env, "alice", mc_workflow("cap", 2000, 100))
    register(env, capacity=5)
    assert len(acquire(env, jobs=3)) == 3
    assert len(acquire(env, jobs=10)) == 2  # 5 held: no hoarding beyond capacity
    assert acquire(env, jobs=10) == []


def ten_jobs_per_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests of more than 10 jobs put several jobs in each allocation (as a request of more
    than the real MAX_ALLOCATIONS does), without inserting 100,000 rows."""
    monkeypatch.setattr("prodrequest.spec.MAX_ALLOCATIONS", 10)


def test_acquire_counts_jobs_not_allocations(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    ten_jobs_per_allocation(monkeypatch)
    rid = submit(env, "alice", mc_workflow("packed", 950, 10))  # 95 jobs: 9 allocations of 10, one of 5
    alloc = pm_schema.allocation
    stored = env.db.read(lambda conn: conn.execute(
        sa.select(alloc.c.n_events, alloc.c.n_jobs).where(alloc.c.request_id == rid).order_by(alloc.c.job_index)
    ).all())
    assert [tuple(r) for r in stored] == [(100, 10)] * 9 + [(50, 5)]
    register(env, capacity=25)
    first = acquire(env, jobs=25)
    assert [a.n_jobs for a in first] == [10, 10, 10]  # ceil(25 / 10) allocations: 30 jobs, not 25 allocations
    assert acquire(env, jobs=25) == [] and acquire(env) == []  # 30 jobs held: no room left
    assert [a.held for a in env.pull.agents(env.who("ops"))] == [30]
    register(env, "a2", "agent2", capacity=3)
    [big] = acquire(env, "a2", "agent2")  # one allocation of more jobs than its capacity: not starved
    assert big.n_jobs == 10 and acquire(env, "a2", "agent2", jobs=1) == []
    register(env, "a3", "agent2", capacity=100)
    assert [a.n_jobs for a in acquire(env, "a3", "agent2")] == [10] * 5 + [5]  # the rest, the last short


def test_auto_sizing_allocations_hold_guessed_jobs(env: Env) -> None:
    events = {"total": 250, "per_job": "auto", "target_job_s": 60, "time_per_event_s": 2.0}  # 30 per guess
    submit(env, "alice", {**mc_workflow("guessed", 250, 10), "events": events})
    register(env, capacity=4)
    [a] = acquire(env)  # 4 guessed jobs (AUTO_CHUNK_JOBS) per allocation: one fills the capacity
    assert (a.n_events, a.n_jobs) == (120, 4) and acquire(env) == []
    register(env, "a2", "agent2", capacity=5)
    assert [(b.n_events, b.n_jobs) for b in acquire(env, "a2", "agent2")] == [(120, 4), (10, 1)]  # reach 5


def test_shares_count_jobs(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    ten_jobs_per_allocation(monkeypatch)
    from prodmanager.pull_service import PullService

    pull = PullService(env.db, lease_seconds=LEASE_S, shares={"prod": 50, "test": 50})
    big = submit(env, "alice", mc_workflow("prod-big", 1000, 10, group="prod", priority=900))  # 10 jobs each
    small = submit(env, "alice", mc_workflow("test-small", 10, 1, group="test"))  # 1 job each
    register(env, capacity=20)
    got = pull.acquire(env.who("agent1"), "a1", AcquireRequest(jobs=20)).allocations
    jobs: dict[int, int] = {}
    for a in got:
        jobs[a.request_id] = jobs.get(a.request_id, 0) + a.n_jobs
    assert jobs == {big: 10, small: 10}  # 10 jobs each: one allocation of prod, ten of test


def test_acquire_by_events(env: Env) -> None:
    submit(env, "alice", mc_workflow("byevents", 2000, 300))
    register(env)
    assert [a.n_events for a in acquire(env, events=700)] == [300, 300]
    assert [a.n_events for a in acquire(env, events=100)] == [300]  # one at least: no starvation


def test_sites_whitelist_and_blacklist(env: Env) -> None:
    submit(env, "alice", mc_workflow("cern_only", 200, 100, sites={"whitelist": ["CERN"]}))
    submit(env, "alice", mc_workflow("not_jinr", 200, 100, sites={"blacklist": ["JINR"]}))
    register(env, "jinr", "agent1", sites=["JINR"])
    register(env, "cern", "agent2", sites=["CERN"])
    assert acquire(env, "jinr", "agent1") == []
    names = {a.request_name for a in acquire(env, "cern", "agent2")}
    assert names == {"cern_only", "not_jinr"}


def test_renew_report_complete_and_counters(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("flow", 400, 100))
    register(env)
    allocs = acquire(env, jobs=2)
    renewed = env.pull.renew(
        env.who("agent1"),
        "a1",
        RenewRequest(
            leases=[
                LeaseRef(allocation_id=a.allocation_id, lease_token=a.lease_token) for a in allocs
            ]
        ),
    )
    assert [r.status for r in renewed.results] == ["ok", "ok"]
    a = allocs[0]
    env.pull.report(
        env.who("agent1"),
        "a1",
        a.allocation_id,
        ProgressReport(lease_token=a.lease_token, events_done=40, job_state="running"),
    )
    env.pull.report(
        env.who("agent1"),
        "a1",
        a.allocation_id,
        ProgressReport(lease_token=a.lease_token, events_done=60, job_state="running"),
    )
    c = env.requests.summary(rid).counters
    assert (c.events_allocated, c.events_in_progress, c.events_produced, c.jobs) == (
        200,
        60,
        0,
        {"running": 1},
    )
    complete(env, a, files=[out(a)])
    complete(env, a, files=[out(a)])  # repeated (lost answer): accepted, nothing counted twice
    detail = env.requests.get(env.who("alice"), rid)
    assert detail.state == "running"
    assert (detail.counters.events_produced, detail.counters.files_unmerged) == (100, 1)
    assert [h.to_state for h in detail.history] == ["new", "assigned", "running"]
    with pytest.raises(InvalidInput):
        complete_with(env, allocs[1], 101)


def complete_with(env: Env, a: Allocation, events: int) -> None:
    env.pull.complete(
        env.who("agent1"),
        "a1",
        a.allocation_id,
        CompleteReport(lease_token=a.lease_token, events_done=events),
    )


def test_expired_lease_goes_to_another_agent_and_late_report_is_refused(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("expire", 200, 100))
    register(env, "a1", "agent1")
    register(env, "a2", "agent2")
    # Long enough that the report and the next acquire happen within it on a loaded machine.
    lost = acquire(env, "a1", "agent1", lease_seconds=2.0)
    env.pull.report(
        env.who("agent1"),
        "a1",
        lost[0].allocation_id,
        ProgressReport(lease_token=lost[0].lease_token, events_done=50, files=[out(lost[0])]),
    )
    assert acquire(env, "a2", "agent2") == []  # still leased
    time.sleep(max(0.0, max(a.lease_expires for a in lost) - time.time()) + 0.5)
    taken = acquire(env, "a2", "agent2")
    assert {a.allocation_id for a in taken} == {a.allocation_id for a in lost}
    assert all(a.lease_epoch == 2 for a in taken)
    with pytest.raises(LeaseLost) as info:
        complete(env, lost[0], "a1", "agent1", files=[out(lost[0])])
    assert info.value.details["status"] == "expired"
    renewed = env.pull.renew(
        env.who("agent1"),
        "a1",
        RenewRequest(
            leases=[LeaseRef(allocation_id=lost[0].allocation_id, lease_token=lost[0].lease_token)]
        ),
    )
    assert renewed.results[0].status == "expired"
    for a in taken:
        complete(env, a, "a2", "agent2", files=[out(a)])
    summary = env.requests.summary(rid)
    assert summary.state == "completed"
    # The first lease's file was superseded: only the second lease's output counts.
    assert (summary.counters.events_produced, summary.counters.files_unmerged) == (200, 2)


def test_expired_lease_kept_by_its_agent_while_nobody_took_it(env: Env) -> None:
    submit(env, "alice", mc_workflow("grace", 100, 100))
    register(env)
    [a] = acquire(env, lease_seconds=0.2)
    time.sleep(0.3)
    renewed = env.pull.renew(
        env.who("agent1"),
        "a1",
        RenewRequest(leases=[LeaseRef(allocation_id=a.allocation_id, lease_token=a.lease_token)]),
    )
    assert renewed.results[0].status == "ok" and renewed.results[0].lease_expires > time.time()


def test_abort_recalls_allocations(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("recall", 500, 100))
    register(env)
    allocs = acquire(env, jobs=2)
    summary = env.requests.abort(env.who("alice"), rid, "wrong generator settings")
    assert summary.state == "aborted" and summary.counters.allocations["recalled"] == 5
    renewed = env.pull.renew(
        env.who("agent1"),
        "a1",
        RenewRequest(
            leases=[
                LeaseRef(allocation_id=a.allocation_id, lease_token=a.lease_token) for a in allocs
            ]
        ),
    )
    assert {r.status for r in renewed.results} == {"recalled"}
    with pytest.raises(LeaseLost) as info:
        complete(env, allocs[0])
    assert info.value.details["status"] == "recalled"
    assert acquire(env) == []
    history = env.requests.get(env.who("ops"), rid).history
    assert (history[-1].to_state, history[-1].actor) == ("aborted", "alice")
    assert "wrong generator settings" in history[-1].reason


def test_pause_stops_handing_out_and_resume_restores(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("pausing", 400, 100))
    register(env)
    [first] = acquire(env, jobs=1)
    env.requests.pause(env.who("alice"), rid)
    assert acquire(env) == []
    complete(env, first)  # leased work may finish while paused
    assert env.requests.resume(env.who("alice"), rid).state == "running"
    assert len(acquire(env)) == 3


def test_release_and_failure_then_clone(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("fails", 400, 100))
    register(env)
    allocs = acquire(env, jobs=4)
    env.pull.release(
        env.who("agent1"),
        "a1",
        allocs[0].allocation_id,
        ReleaseRequest(lease_token=allocs[0].lease_token),
    )
    [again] = acquire(env, jobs=1)
    assert again.allocation_id == allocs[0].allocation_id and again.lease_epoch == 2
    complete(env, again)
    complete(env, allocs[1])
    env.pull.release(
        env.who("agent1"),
        "a1",
        allocs[2].allocation_id,
        ReleaseRequest(lease_token=allocs[2].lease_token, failed=True, reason="exhausted"),
    )
    complete(env, allocs[3])
    summary = env.requests.summary(rid)
    assert summary.state == "failed" and summary.counters.events_failed == 100
    clone = env.requests.clone(env.who("alice"), rid).request
    assert (clone.name, clone.total_events, clone.total_jobs, clone.parent_id) == (
        "fails-acdc1",
        100,
        1,
        rid,
    )
    [redo] = acquire(env)
    assert (redo.request_id, redo.first_event, redo.seed) == (
        clone.id,
        allocs[2].first_event,
        allocs[2].seed,
    )


def test_merged_files_retire_inputs_and_close_the_request(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("merging", 300, 100))
    register(env)
    allocs = acquire(env)
    for a in allocs:
        complete(env, a, files=[out(a)])
    inputs = [out(a).lfn for a in allocs]
    bad = MergedFile(
        lfn="/store/merged/m0.root", size=3000, checksum="adler32:2", events=299, inputs=inputs
    )
    with pytest.raises(InvalidInput):
        env.pull.report_merged(env.who("agent1"), "a1", MergedReport(request_id=rid, files=[bad]))
    good = bad.model_copy(update={"events": 300})
    ack = env.pull.report_merged(
        env.who("agent1"), "a1", MergedReport(request_id=rid, files=[good])
    )
    assert (ack.files_accepted, ack.request_state) == (1, "closed")
    again = env.pull.report_merged(
        env.who("agent1"), "a1", MergedReport(request_id=rid, files=[good])
    )
    assert again.files_duplicate == 1
    c = env.requests.summary(rid).counters
    assert (c.events_merged, c.files_merged, c.files_unmerged) == (300, 1, 0)


def test_agents_are_bound_to_their_token(env: Env) -> None:
    submit(env, "alice", mc_workflow("bound", 100, 100))
    register(env, "a1", "agent1")
    with pytest.raises(Forbidden):
        acquire(env, "a1", "agent2")
    with pytest.raises(Forbidden):
        register(env, "a1", "agent2")
    with pytest.raises(NotFound):
        acquire(env, "ghost", "agent1")
    with pytest.raises(Forbidden):
        acquire(env, "a1", "alice")


def test_bulk_completion_takes_each_item_alone(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("bulk", 600, 100))
    register(env)
    allocs = acquire(env, jobs=6)
    complete(env, allocs[0], files=[out(allocs[0])])  # done before: a repeat is acknowledged
    items = [
        CompleteItem(allocation_id=allocs[0].allocation_id, lease_token=allocs[0].lease_token,
                     events_done=allocs[0].n_events, files=[out(allocs[0])]),
        CompleteItem(allocation_id=allocs[1].allocation_id, lease_token=allocs[1].lease_token,
                     events_done=allocs[1].n_events, files=[out(allocs[1])]),
        CompleteItem(allocation_id=allocs[2].allocation_id, lease_token="not-the-token",
                     events_done=allocs[2].n_events),
        CompleteItem(allocation_id=allocs[3].allocation_id, lease_token=allocs[3].lease_token,
                     events_done=allocs[3].n_events + 1),
        CompleteItem(allocation_id=999_999, lease_token="x", events_done=1),
        CompleteItem(allocation_id=allocs[4].allocation_id, lease_token=allocs[4].lease_token,
                     events_done=allocs[4].n_events, files=[out(allocs[4])]),
        # Refused after it was finished: its file is allocs[1]'s. The savepoint undoes it.
        CompleteItem(allocation_id=allocs[5].allocation_id, lease_token=allocs[5].lease_token,
                     events_done=allocs[5].n_events, files=[out(allocs[1])]),
    ]
    results = env.pull.complete_many(env.who("agent1"), "a1", CompleteMany(items=items)).results
    assert [(r.allocation_id, r.error) for r in results] == [
        (allocs[0].allocation_id, None), (allocs[1].allocation_id, None),
        (allocs[2].allocation_id, "lease_lost"), (allocs[3].allocation_id, "invalid"),
        (999_999, "not_found"), (allocs[4].allocation_id, None), (allocs[5].allocation_id, "conflict"),
    ]
    assert results[0].ack.files_accepted == 0 and results[1].ack.files_accepted == 1
    assert results[2].status == "expired" and "more than the allocation's" in results[3].detail
    counters = env.requests.summary(rid).counters
    # Three done (one of them before), three still leased: nothing of the refused items counted.
    assert (counters.events_produced, counters.files_unmerged) == (300, 3)
    for a in allocs[2:4] + allocs[5:]:
        complete(env, a, files=[out(a)])
    assert env.requests.summary(rid).state == "completed"
    with pytest.raises(Forbidden):
        env.pull.complete_many(env.who("agent2"), "a1", CompleteMany(items=items[:1]))


# --- every agent report is checked against the leases that agent holds (issue 9, defect 6) -----


def merged_of(name: str, allocs: list[Allocation], inputs: list[OutputFile] | None = None) -> MergedFile:
    files = inputs if inputs is not None else [out(a) for a in allocs]
    return MergedFile(lfn=f"/store/merged/{name}.root", size=5000, checksum="adler32:3",
                      events=sum(f.events for f in files), inputs=[f.lfn for f in files])


def test_an_agent_cannot_report_on_another_agents_lease(env: Env) -> None:
    submit(env, "alice", mc_workflow("theirs", 400, 100))
    register(env, "a1", "agent1")
    register(env, "a2", "agent2")
    mine = acquire(env, "a1", "agent1", jobs=2)
    theirs = acquire(env, "a2", "agent2", jobs=2)
    victim = mine[0]
    # a2 presents a1's lease (token and all) in every kind of report: refused, nothing changes.
    with pytest.raises(LeaseLost):
        env.pull.report(env.who("agent2"), "a2", victim.allocation_id,
                        ProgressReport(lease_token=victim.lease_token, events_done=10, files=[out(victim)]))
    with pytest.raises(LeaseLost):
        complete(env, victim, "a2", "agent2", files=[out(victim)])
    with pytest.raises(LeaseLost):
        env.pull.release(env.who("agent2"), "a2", victim.allocation_id,
                         ReleaseRequest(lease_token=victim.lease_token, failed=True, reason="not mine"))
    [outcome] = env.pull.complete_many(env.who("agent2"), "a2", CompleteMany(items=[CompleteItem(
        allocation_id=victim.allocation_id, lease_token=victim.lease_token, events_done=victim.n_events,
        files=[out(victim)])])).results
    assert outcome.error == "lease_lost"
    renewed = env.pull.renew(env.who("agent2"), "a2", RenewRequest(leases=[
        LeaseRef(allocation_id=victim.allocation_id, lease_token=victim.lease_token)]))
    assert renewed.results[0].status == "expired"
    # a1 still holds it, with nothing reported: it completes normally.
    for a in mine:
        complete(env, a, "a1", "agent1", files=[out(a)])
    for a in theirs:
        complete(env, a, "a2", "agent2", files=[out(a)])
    c = env.requests.summary(victim.request_id).counters
    assert (c.events_produced, c.files_unmerged) == (400, 4)


def test_merged_report_names_only_the_reporters_own_outputs(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("own-merges", 400, 100))
    register(env, "a1", "agent1")
    register(env, "a2", "agent2")
    mine = acquire(env, "a1", "agent1", jobs=2)
    theirs = acquire(env, "a2", "agent2", jobs=2)
    for a in mine:
        complete(env, a, "a1", "agent1", files=[out(a)])
    for a in theirs:
        complete(env, a, "a2", "agent2", files=[out(a)])
    # a2 merges a1's files, alone or mixed with its own: 403 naming a1's file.
    for inputs in ([out(a) for a in mine], [out(theirs[0]), out(mine[1])]):
        with pytest.raises(Forbidden) as info:
            env.pull.report_merged(env.who("agent2"), "a2", MergedReport(
                request_id=rid, files=[merged_of("stolen", [], inputs)]))
        assert info.value.details["lfn"] in {out(a).lfn for a in mine}
        assert info.value.details["lfn"] in info.value.message
    c = env.requests.summary(rid).counters
    assert (c.events_merged, c.files_merged, c.files_unmerged) == (0, 0, 4)  # nothing retired
    # Each agent merges its own; a2 cannot pass a1's merged file off as its own duplicate.
    ack = env.pull.report_merged(env.who("agent1"), "a1", MergedReport(request_id=rid, files=[merged_of("m1", mine)]))
    assert ack.files_accepted == 1
    with pytest.raises(Conflict):
        env.pull.report_merged(env.who("agent2"), "a2", MergedReport(request_id=rid, files=[merged_of("m1", mine)]))
    again = env.pull.report_merged(env.who("agent1"), "a1", MergedReport(request_id=rid, files=[merged_of("m1", mine)]))
    assert again.files_duplicate == 1  # the reporter's own repeat is acknowledged
    ack = env.pull.report_merged(env.who("agent2"), "a2", MergedReport(request_id=rid, files=[merged_of("m2", theirs)]))
    assert (ack.files_accepted, ack.request_state) == (1, "closed")
    c = env.requests.summary(rid).counters
    assert (c.events_merged, c.files_merged, c.files_unmerged) == (400, 2, 0)


def test_merged_report_refuses_outputs_of_a_lost_lease(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("lost-merges", 100, 100))
    register(env, "a1", "agent1")
    register(env, "a2", "agent2")
    [first] = acquire(env, "a1", "agent1", lease_seconds=0.3)
    env.pull.report(env.who("agent1"), "a1", first.allocation_id,
                    ProgressReport(lease_token=first.lease_token, events_done=100, files=[out(first)]))
    time.sleep(0.5)
    [second] = acquire(env, "a2", "agent2")  # the lease went to a2: a1's file is superseded
    assert second.lease_epoch == first.lease_epoch + 1
    complete(env, second, "a2", "agent2", files=[out(second)])
    # a1's output of its lost lease cannot be merged, by a1 (superseded) nor by a2 (not its own).
    with pytest.raises(Conflict) as info:
        env.pull.report_merged(env.who("agent1"), "a1", MergedReport(request_id=rid, files=[merged_of("lost", [first])]))
    assert out(first).lfn in info.value.message
    with pytest.raises(Forbidden):
        env.pull.report_merged(env.who("agent2"), "a2", MergedReport(request_id=rid, files=[merged_of("lost", [first])]))
    ack = env.pull.report_merged(env.who("agent2"), "a2", MergedReport(request_id=rid, files=[merged_of("ok", [second])]))
    assert (ack.files_accepted, ack.request_state) == (1, "closed")
    c = env.requests.summary(rid).counters
    assert (c.events_merged, c.files_merged) == (100, 1)


# --- an acquire never leases what it then fails to deliver (issue 9, defect 2) -----------------


def test_a_request_that_cannot_be_delivered_blocks_no_one(env: Env) -> None:
    bad = submit(env, "alice", mc_workflow("undeliverable", 300, 100, priority=9000))
    good = submit(env, "bob", mc_workflow("deliverable", 200, 100))
    # A spec stored by an older, laxer door: a lone surrogate (valid JSON text, not valid UTF-8).
    env.db.transaction(lambda conn: conn.execute(
        pm_schema.request.update().where(pm_schema.request.c.id == bad)
        .values(spec=_with_surrogate(conn, bad))))
    register(env)
    response = env.pull.acquire(env.who("agent1"), "a1", AcquireRequest(jobs=10))
    response.model_dump_json()  # what is answered can be encoded
    assert {a.request_id for a in response.allocations} == {good}
    assert len(response.allocations) == 2
    epochs = env.db.read(lambda conn: conn.execute(
        sa.select(pm_schema.allocation.c.lease_epoch, pm_schema.allocation.c.lease_expires)
        .where(pm_schema.allocation.c.request_id == bad)).all())
    assert epochs and all(e == 0 and x == 0 for e, x in epochs)  # nothing of it was leased
    detail = env.requests.get(env.who("alice"), bad)
    assert detail.state == "paused"
    assert "cannot be delivered" in detail.history[-1].reason
    assert acquire(env, jobs=10) == []  # and it stays out of the way


def _with_surrogate(conn: sa.Connection, request_id: int) -> str:
    spec = json.loads(conn.execute(sa.select(pm_schema.request.c.spec)
                                   .where(pm_schema.request.c.id == request_id)).scalar_one())
    spec["payload"]["parameters"]["process"] = "minbias\ud800"
    return json.dumps(spec)  # ensure_ascii: stored as the escape \ud800


def test_bulk_completion_of_plain_items_beside_refused_ones(env: Env) -> None:
    """Plain completions take the few-statement path, the others the single call's answers."""
    rid = submit(env, "alice", mc_workflow("bulk_plain", 500, 100))
    register(env)
    allocs = acquire(env, jobs=5)
    complete(env, allocs[4], files=[out(allocs[4])])  # a repeat: acknowledged, nothing counted twice
    items = [CompleteItem(allocation_id=a.allocation_id, lease_token=a.lease_token, events_done=a.n_events,
                          files=[out(a)]) for a in allocs]
    items[2] = CompleteItem(allocation_id=allocs[2].allocation_id, lease_token="stale", events_done=100)
    results = env.pull.complete_many(env.who("agent1"), "a1", CompleteMany(items=items)).results
    assert [r.error for r in results] == [None, None, "lease_lost", None, None]
    assert [r.ack.files_accepted for r in results if r.ack] == [1, 1, 1, 0]
    counters = env.requests.summary(rid).counters
    assert (counters.events_produced, counters.files_unmerged, counters.allocations["done"]) == (400, 4, 4)
    complete(env, allocs[2], files=[out(allocs[2])])
    assert env.requests.summary(rid).state == "completed"
