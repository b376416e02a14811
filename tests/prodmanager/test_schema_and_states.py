"""Migrations build exactly the schema, share a database with other Alembic users; the request
state machine is an explicit table and every change is recorded."""

from __future__ import annotations

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
