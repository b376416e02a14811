"""The job state table and the bulk transitions that apply it, on a real database."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from prodagent.db.engine import make_engine
from prodagent.db.migrate import upgrade
from prodagent.errors import IllegalTransition
from prodagent.jobs import states, store


def _job(i: int) -> dict:
    return {"agent": "a", "name": f"job-{i}", "job_type": "production", "workdir": f"/tmp/j{i}",
            "request_id": "1", "dataset_id": 1}


def test_transition_table_is_explicit() -> None:
    states.check(states.CREATED, states.SUBMITTED)
    with pytest.raises(IllegalTransition):
        states.check(states.CLEANED, states.CREATED)
    with pytest.raises(IllegalTransition):
        states.check(states.SUCCESS, states.COOLOFF)
    assert states.CREATED in states.allowed_from(states.KILLED)
    assert states.PAUSED in states.allowed_from(states.CREATED)
    assert all(t in states.ALL_STATES for targets in states.TRANSITIONS.values() for t in targets)


def test_bulk_transition_applies_the_table_and_records_history(db_url) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ids = store.insert_jobs(conn, [_job(i) for i in range(5)], reason="test")
        moved = store.transition(conn, ids[:3], states.SUBMITTED, "go",
                                 per_job={i: {"batch_id": f"b{i}", "site": "s"} for i in ids[:3]})
        assert moved.ids == ids[:3] and set(moved.previous.values()) == {"created"}
        # Running from created is not allowed: nothing moves, nothing is recorded.
        assert store.transition(conn, ids[3:], states.RUNNING, "no").ids == []
        # A second identical transition is a no-op (idempotent handlers rely on it).
        assert store.transition(conn, ids[:3], states.SUBMITTED, "again").ids == []
        rows = store.jobs(conn, ids)
        assert [r.batch_id for r in rows] == ["b" + str(i) for i in ids[:3]] + [None, None]
        assert [r.state for r in rows] == ["submitted"] * 3 + ["created"] * 2
        trail = store.history(conn, ids[0])
        assert [(t.from_state, t.to_state, t.reason) for t in trail] == [(None, "created", "test"), ("created", "submitted", "go")]
        store.transition(conn, [ids[0]], states.JOBFAILED, "boom", error_class="X")
        store.transition(conn, [ids[0]], states.COOLOFF, "wait")
        store.transition(conn, [ids[0]], states.CREATED, "retry", retry=1)
        assert store.history(conn, ids[0])[-1].retry == 1
        assert store.count_by_state(conn, "a") == {("production", "created"): 3, ("production", "submitted"): 2}
    engine.dispose()


def test_per_job_transitions_commit_only_with_their_transaction(db_url) -> None:
    """Per-job values are written inside the caller's transaction, and roll back with it."""
    upgrade(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ids = store.insert_jobs(conn, [_job(i) for i in range(4)], reason="test")

    class Abort(Exception):
        pass

    with pytest.raises(Abort), engine.begin() as conn:
        store.transition(conn, ids[:2], states.SUBMITTED, "go", per_job={i: {"batch_id": f"b{i}"} for i in ids[:2]})
        store.transition(conn, ids[2:], states.SUBMITTED, "go", per_job={i: {"batch_id": f"c{i}"} for i in ids[2:]})
        raise Abort
    with engine.begin() as conn:
        rows = store.jobs(conn, ids)
        assert [(r.state, r.batch_id) for r in rows] == [("created", None)] * 4  # nothing of it stayed
        store.transition(conn, ids, states.SUBMITTED, "go", per_job={i: {"batch_id": f"d{i}"} for i in ids})
    with engine.begin() as conn:
        assert [r.batch_id for r in store.jobs(conn, ids)] == [f"d{i}" for i in ids]
    engine.dispose()


def test_per_job_values_keep_their_types_over_several_chunks(db_url) -> None:
    """Each job gets its own values, exactly as given (text beyond ASCII, floats to the last
    digit, NULL for a key the job lacks), across more jobs than one statement takes; a job's
    own value wins over the value common to all; other jobs and columns are left alone."""
    upgrade(db_url)
    engine = make_engine(db_url)
    n = store.ID_CHUNK + 5
    with engine.begin() as conn:
        ids = store.insert_jobs(conn, [_job(i) for i in range(n + 1)], reason="test")
        store.transition(conn, ids, states.SUBMITTED, "go")
        store.transition(conn, ids, states.RUNNING, "run")
        moving = ids[:n]
        figures = {i: {"wall_s": i / 7, "exit_code": i % 3, "node": f"nœud-{i}-✓"} for i in moving}
        figures[moving[-1]] = {"wall_s": 1e-9, "error_class": "Own"}  # no exit code, no node
        moved = store.transition(conn, moving, states.JOBFAILED, "failed", per_job=figures,
                                 error_class="Common", error_code=7)
        assert moved.ids == moving
        rows = {r.id: r for r in store.jobs(conn, ids)}
    for i in moving[:-1]:
        r = rows[i]
        assert (r.state, r.wall_s, r.exit_code, r.node, r.error_class, r.error_code) == \
            ("jobfailed", i / 7, i % 3, f"nœud-{i}-✓", "Common", 7)
    last = rows[moving[-1]]
    assert (last.wall_s, last.exit_code, last.node, last.error_class, last.error_code) == (1e-9, None, None, "Own", 7)
    assert (rows[ids[-1]].state, rows[ids[-1]].wall_s, rows[ids[-1]].error_code) == ("running", None, None)
    with pytest.raises(ValueError, match="not a column"), engine.begin() as conn:
        store.transition(conn, [ids[-1]], states.JOBFAILED, "x", per_job={ids[-1]: {"wall_s; DROP": 1}})
    engine.dispose()


def test_per_job_value_too_long_for_its_column_fails_the_transition(make_mysql_db) -> None:
    """MariaDB: a value too long is refused, not cut (SQLite does not bound text lengths)."""
    url = make_mysql_db()
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        ids = store.insert_jobs(conn, [_job(0)], reason="test")
    with pytest.raises(Exception, match="too long"), engine.begin() as conn:
        store.transition(conn, ids, states.SUBMITTED, "go", per_job={ids[0]: {"site": "s" * 101}})
    with engine.begin() as conn:
        assert store.jobs(conn, ids)[0].state == "created"
    engine.dispose()


def test_per_job_update_reads_jobs_by_primary_key_even_on_a_small_table(make_mysql_db) -> None:
    """MariaDB: each job of the JSON document is one primary-key lookup; left to itself, the
    optimizer scans a small pa_job instead (and a scan grows with the table)."""
    url = make_mysql_db()
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        ids = store.insert_jobs(conn, [_job(i) for i in range(3)], reason="test")
        update = store._per_job_update(conn.dialect.name, ("batch_id",), ())
        doc = json.dumps([{"id": i, "batch_id": "b"} for i in ids])
        plan = {row.table: row for row in conn.execute(sa.text("EXPLAIN " + update.text),
                                                       {"doc": doc, "to_state": "submitted", "now": 0.0})}
    assert (plan["j"].type, plan["j"].key) == ("eq_ref", "PRIMARY")
    engine.dispose()


def test_file_state_table_is_enforced_by_the_store(db_url) -> None:
    from prodagent.jobs import file_states as fs

    assert all(t in fs.ALL_STATES for targets in fs.TRANSITIONS.values() for t in targets)
    upgrade(db_url)
    engine = make_engine(db_url)

    def f(name: str, kind: str = fs.UNMERGED, state: str = fs.NEW) -> dict:
        return {"lfn": f"/store/{name}", "pfn": f"/data/{name}", "dataset_id": 1, "job_id": 1, "kind": kind,
                "state": state, "size": 1, "adler32": "00000001", "events": 1}

    with engine.begin() as conn:
        with pytest.raises(IllegalTransition, match="registered as 'new'"):
            store.insert_files(conn, [f("a"), f("b", state=fs.MERGED)])  # nothing of the batch is written
        with pytest.raises(IllegalTransition, match="registered as 'final'"):
            store.insert_files(conn, [f("m", kind=fs.MERGED_KIND, state=fs.NEW)])
        store.insert_files(conn, [f("a"), f("b"), f("m", kind=fs.MERGED_KIND, state=fs.FINAL)])
        ids = [r.id for r in store.select_files(conn, kind=fs.UNMERGED)]
        assert len(ids) == 2
        with pytest.raises(IllegalTransition, match="'new' -> 'cleaned'"):
            store.set_file_states(conn, ids, fs.NEW, fs.CLEANED)
        with pytest.raises(IllegalTransition, match="'final' -> 'cleaned'"):
            store.set_file_states(conn, ids, fs.FINAL, fs.CLEANED)
        assert store.assign_merge(conn, ids, merge_job_id=7) == 2
        assert store.set_file_states(conn, ids, fs.MERGING, fs.MERGED) == 2
        assert store.set_file_states(conn, ids, fs.MERGING, fs.MERGED) == 0  # already moved: left alone
        assert store.set_file_states(conn, ids, fs.MERGED, fs.CLEANED) == 2
        assert [r.state for r in store.select_files(conn)] == [fs.CLEANED, fs.CLEANED, fs.FINAL]


def test_replica_catalog_records_in_bulk_and_idempotently(db_url) -> None:
    from prodagent.storage import catalog
    from prodagent.storage import replica_states as rs

    upgrade(db_url)
    engine = make_engine(db_url)
    n = 2500  # more than one IN-list chunk
    files = [{"lfn": f"/store/u/{i}", "pfn": f"/data/u/{i}", "dataset_id": 1, "job_id": i, "kind": "unmerged",
              "state": "new", "size": 1, "adler32": "00000001", "events": 1} for i in range(n)]
    replicas = [{"lfn": f["lfn"], "element": "workarea", "pfn": f["pfn"], "role": "unmerged", "size": 1,
                 "adler32": "00000001"} for f in files]
    with engine.begin() as conn:
        store.insert_files(conn, files)
        assert catalog.record(conn, replicas) == n
        assert catalog.record(conn, replicas) == 0  # recorded verified already: left alone
        ids = {r.lfn: r.id for r in store.select_files(conn, limit=n)}
        rows = catalog.of_files(conn, ids.values())
        assert len(rows) == n and {r.state for r in rows} == {rs.VERIFIED}
        # A deleted replica written again is verified again, with its new facts; an unknown LFN is skipped.
        first = rows[0]
        assert catalog.set_state(conn, [first.id], rs.VERIFIED, rs.DELETED) == 1
        again = {**replicas[0], "lfn": next(k for k, v in ids.items() if v == first.file_id), "pfn": "/data/new"}
        assert catalog.record(conn, [again, {**replicas[1], "lfn": "/store/unknown"}]) == 1
        row = catalog.of_files(conn, [first.file_id])[0]
        assert (row.state, row.pfn) == (rs.VERIFIED, "/data/new")
        with pytest.raises(ValueError, match="unknown replica role"):
            catalog.record(conn, [{**replicas[2], "role": "bogus"}])
    engine.dispose()
