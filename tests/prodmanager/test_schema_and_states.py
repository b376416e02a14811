"""Migrations build exactly the schema, share a database with other Alembic users; the request
state machine is an explicit table and every change is recorded."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from prodmanager.db import migrate
from prodmanager.db.engine import Database, is_retryable
from prodmanager.db.schema import metadata
from prodmanager.errors import IllegalTransition
from prodmanager.states import REQUEST_TRANSITIONS, RequestState, check_request_transition
from tests.prodmanager.conftest import Env, mc_workflow, submit


def test_migrations_build_the_schema_and_leave_other_tables_alone(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.begin() as conn:  # the agent's own Alembic table, in the same database
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('agent0001')"))
    migrate.upgrade(db.engine)
    migrate.upgrade(db.engine)  # idempotent
    assert migrate.current_revision(db.engine) == migrate.head_revision() == "0008"
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [
            d
            for d in compare_metadata(context, metadata)
            if not (
                d[0] == "remove_table" and d[1].name in ("alembic_version", migrate.VERSION_TABLE)
            )
        ]
        assert diff == []
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "agent0001"
        )
    db.dispose()


def test_sqlite_uses_wal_and_a_busy_timeout(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    db.dispose()


def test_deadlocks_and_lock_waits_are_retried(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    attempts = []

    class FakeDeadlock(Exception):
        args = (1213, "Deadlock found when trying to get lock")

    def work(conn: sa.Connection) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise sa.exc.OperationalError("UPDATE ...", {}, FakeDeadlock())
        return "done"

    assert db.transaction(work) == "done" and len(attempts) == 3
    assert not is_retryable(sa.exc.OperationalError("x", {}, Exception(1062, "duplicate")))
    db.dispose()


def test_transition_table() -> None:
    assert set(REQUEST_TRANSITIONS) == set(RequestState)
    assert REQUEST_TRANSITIONS[RequestState.CLOSED] == frozenset()
    assert REQUEST_TRANSITIONS[RequestState.ABORTED] == frozenset()
    check_request_transition("running", "completed")
    for current, target in [
        ("completed", "running"),
        ("aborted", "new"),
        ("new", "completed"),
        ("closed", "aborted"),
    ]:
        with pytest.raises(IllegalTransition):
            check_request_transition(current, target)


def test_every_change_is_recorded_with_who_and_why(env: Env) -> None:
    rid = submit(env, "alice", mc_workflow("recorded", 200, 100))
    env.requests.pause(env.who("alice"), rid, "waiting for calibration")
    env.requests.resume(env.who("ops"), rid, "calibration ready")
    env.requests.abort(env.who("alice"), rid, "superseded")
    with pytest.raises(IllegalTransition):
        env.requests.resume(env.who("alice"), rid)
    history = env.requests.get(env.who("alice"), rid).history
    assert [(h.from_state, h.to_state, h.actor) for h in history] == [
        (None, "new", "alice"),
        ("new", "paused", "alice"),
        ("paused", "new", "ops"),
        ("new", "aborted", "alice"),
    ]
    assert history[1].reason == "waiting for calibration"
    assert history[3].reason.startswith("superseded")
    assert all(h.at > 0 for h in history)


def test_submitting_the_same_document_twice_returns_the_first_request(env: Env) -> None:
    from prodrequest.loader import validate_workflow

    doc = mc_workflow("twice", 100, 100)
    first = env.requests.submit(env.who("alice"), validate_workflow(doc))
    again = env.requests.submit(env.who("alice"), validate_workflow(doc))
    assert first.created and not again.created and again.request.id == first.request.id
    from prodmanager.errors import Conflict

    with pytest.raises(Conflict, match="different request named 'twice'"):
        env.requests.submit(env.who("alice"), validate_workflow({**doc, "priority": 7}))


def test_migration_0007_counts_the_jobs_of_existing_allocations(db_url: str) -> None:
    from prodmanager.db.schema import allocation, request

    db = Database(db_url)
    migrate.upgrade(db.engine, "0006")
    specs = {
        "mc": {"kind": "montecarlo", "events": {"total": 250, "per_job": 10}},
        "auto": {"kind": "montecarlo", "events": {"total": 90, "per_job": "auto", "target_job_s": 60,
                                                  "time_per_event_s": 2.0}},  # 30 events per guessed job
        "proc": {"kind": "processing", "input": {}},
        "bad": {"kind": "montecarlo"},
    }
    cols = ["request_id", "job_index", "first_event", "n_events", "seed", "state", "updated_at"]
    with db.engine.begin() as conn:
        for n, (name, spec) in enumerate(specs.items(), start=1):
            conn.execute(sa.text(
                "INSERT INTO pm_request (id, name, kind, owner, state, priority, total_events, total_jobs, "
                "run_number, sites, spec, spec_sha256, created_at, updated_at) VALUES "
                f"({n}, '{name}', '{spec['kind']}', 'alice', 'new', 1, 1, 1, 1, '{{}}', :spec, 'x', 0, 0)"
            ), {"spec": json.dumps(spec)})
        rows = [(1, 0, 0, 100), (1, 10, 100, 100), (1, 20, 200, 50), (2, 0, 0, 90), (3, 0, 0, 500), (4, 0, 0, 100)]
        for request_id, index, first, n_events in rows:
            conn.execute(sa.text(f"INSERT INTO pm_allocation ({', '.join(cols)}) VALUES "
                                 f"({request_id}, {index}, {first}, {n_events}, 1, 'open', 0)"))
    migrate.upgrade(db.engine)
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(allocation.c.request_id, allocation.c.n_jobs)
                             .order_by(allocation.c.request_id, allocation.c.job_index)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(request)).scalar() == 4
    assert [tuple(r) for r in found] == [(1, 10), (1, 10), (1, 5), (2, 3), (3, 1), (4, 1)]
    db.dispose()
