"""Runs of a processing request (prodmanager.runs), on SQLite and MariaDB: input files by state,
the per-run gate, a run with a failed chunk needing attention with its numbers until an operator
accepts it (or drops it), and the request closing only then."""

from __future__ import annotations

import pytest

from prodmanager.errors import Conflict, Forbidden
from prodmanager.models import Allocation, MergedFile, MergedReport, ReleaseRequest, RunInfo
from tests.prodmanager.conftest import Env
from tests.prodmanager.test_pull import acquire, complete, out, register


def processing(name: str, runs: dict[int, int]) -> dict[str, object]:
    files = [f"/store/raw/cdr{chunk:05d}-{run}.raw" for run, n in runs.items() for chunk in range(1, n + 1)]
    return {
        "kind": "processing", "name": name,
        "payload": {"transformation": "reconstruct", "version": "1"},
        "input": {"files": [{"lfn": f, "events": 10} for f in files], "files_per_job": 1,
                  "name_pattern": r"cdr(?P<chunk>\d+)-(?P<run>\d+)\.raw$"},
        "output": {"dataset": f"/Raw/{name}/MDST", "tier": "MDST"},
    }


def by_run(env: Env, rid: int) -> dict[int, RunInfo]:
    return {r.run: r for r in env.requests.runs(env.who("alice"), rid)}


def merge(env: Env, rid: int, allocs: list[Allocation], name: str) -> None:
    files = [out(a) for a in allocs]
    merged = MergedFile(lfn=f"/store/merged/{name}.root", size=1, checksum="adler32:00000001",
                        events=sum(f.events for f in files), inputs=[f.lfn for f in files])
    env.pull.report_merged(env.who("agent1"), "a1", MergedReport(request_id=rid, files=[merged]))


def test_a_failed_chunk_holds_its_run_until_an_operator_accepts(env: Env) -> None:
    rid = env.requests.submit(env.who("alice"), _validated(processing("gate", {7: 3, 8: 2}))).request.id
    register(env)
    allocs = acquire(env, jobs=100)
    runs = by_run(env, rid)
    assert {r: (i.state, i.files["assigned"]) for r, i in runs.items()} == {7: ("open", 3), 8: ("open", 2)}
    run7 = [a for a in allocs if a.input_files[0].run == 7]
    run8 = [a for a in allocs if a.input_files[0].run == 8]
    assert [a.input_files[0].chunk for a in run7] == [1, 2, 3]

    for a in run8 + run7[:2]:
        complete(env, a, files=[out(a)])
    assert by_run(env, rid)[8].state == "ready" and by_run(env, rid)[7].state == "open"
    env.pull.release(env.who("agent1"), "a1", run7[2].allocation_id,
                     ReleaseRequest(lease_token=run7[2].lease_token, failed=True, reason="exhausted"))
    seven = by_run(env, rid)[7]
    assert seven.state == "needs_attention"
    assert seven.reason == "1 of 3 file(s) failed: 20 of 30 input events processed"
    assert seven.files == {**seven.files, "processed": 2, "failed": 1}

    merge(env, rid, run8, "run8_000")
    assert by_run(env, rid)[8].state == "merged"
    assert env.requests.summary(rid).state == "failed"  # a chunk failed, and nobody decided yet
    with pytest.raises(Forbidden):
        env.requests.decide_run(env.who("alice"), rid, 7, "accept")  # operators decide
    with pytest.raises(Conflict):
        env.requests.decide_run(env.who("ops"), rid, 8, "accept")  # nothing to accept

    accepted = env.requests.decide_run(env.who("ops"), rid, 7, "accept", "chunk 3 is lost")
    assert (accepted.state, accepted.decision, accepted.files["given_up"]) == ("ready", "accepted", 1)
    merge(env, rid, run7[:2], "run7_000")
    assert by_run(env, rid)[7].state == "merged" and by_run(env, rid)[7].merged_events == 20
    assert env.requests.summary(rid).state == "closed"


def test_reprocess_opens_the_failed_chunk_and_drop_supersedes_a_run(env: Env) -> None:
    rid = env.requests.submit(env.who("alice"), _validated(processing("redo", {5: 2, 6: 1}))).request.id
    register(env)
    allocs = {(a.input_files[0].run, a.input_files[0].chunk): a for a in acquire(env, jobs=100)}
    complete(env, allocs[(5, 1)], files=[out(allocs[(5, 1)])])
    for key in ((5, 2), (6, 1)):
        a = allocs[key]
        env.pull.release(env.who("agent1"), "a1", a.allocation_id,
                         ReleaseRequest(lease_token=a.lease_token, failed=True, reason="exhausted"))
    assert env.requests.summary(rid).state == "failed"
    redone = env.requests.decide_run(env.who("ops"), rid, 5, "reprocess")
    assert (redone.state, redone.files["unused"]) == ("open", 1)
    assert env.requests.summary(rid).state == "running"
    (again,) = acquire(env, jobs=100)
    assert (again.input_files[0].run, again.input_files[0].chunk) == (5, 2)
    complete(env, again, files=[out(again)])
    dropped = env.requests.decide_run(env.who("ops"), rid, 6, "drop", "bad run")
    assert dropped.state == "dropped"
    merge(env, rid, [allocs[(5, 1)], again], "run5_000")
    assert by_run(env, rid)[5].state == "merged"
    assert env.requests.summary(rid).state == "closed"


def _validated(doc: dict[str, object]) -> object:
    from prodrequest.loader import validate_workflow

    return validate_workflow(doc)
