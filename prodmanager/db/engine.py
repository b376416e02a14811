"""Engines and transactions: SQLite (WAL, busy timeout, BEGIN IMMEDIATE for writers) or MariaDB
(READ COMMITTED, so `SKIP LOCKED` claims do not take gap locks).

`Database.transaction(work)` runs `work(connection)` in one transaction and runs it again when the
database reports a deadlock or a lock-wait timeout (MySQL 1213/1205, SQLite "database is locked"),
so callers never see those as crashes. `work` must therefore only touch the database.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_MYSQL_CODES = frozenset({1213, 1205})  # deadlock, lock wait timeout
READ_ONLY = "prodmanager_read_only"
SQLITE_BUSY_TIMEOUT_S = 30.0


def make_engine(url: str) -> sa.Engine:
    """An engine configured for ProdManager's transaction discipline on SQLite or MariaDB."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(
        url,
        isolation_level="READ COMMITTED",
        pool_recycle=3600,  # no pre-ping round trip: a dropped connection is retried instead
        pool_size=10,
        max_overflow=30,
    )


def _sqlite_engine(url: str) -> sa.Engine:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the write lock up front: a read-then-write transaction can never be
        # refused halfway with SQLITE_BUSY, and select-then-update is atomic.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def is_retryable(exc: BaseException) -> bool:
    """True for deadlocks, lock-wait timeouts and dropped connections (the database restarted),
    which a new attempt usually gets past."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and args[0] in RETRYABLE_MYSQL_CODES:
        return True
    return "database is locked" in str(orig) or "database table is locked" in str(orig)


class Database:
    """One engine plus the retrying transaction runner every service call goes through."""

    def __init__(self, url: str, attempts: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.attempts = attempts
        # SQLite has one writer at a time and its busy handler polls with sleeps, which starves
        # some threads under load; threads of one process queue on this lock instead.
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self.dialect == "sqlite" else nullcontext()
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def transaction(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work` in a read-write transaction, retried on deadlock and lock timeout."""
        return self._run(work, read_only=False)

    def read(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work` in a read-only transaction (on SQLite it does not block writers)."""
        return self._run(work, read_only=True)

    def _run(self, work: Callable[[sa.Connection], T], read_only: bool) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                with (
                    nullcontext() if read_only else self._write_lock,
                    self.engine.connect() as conn,
                ):
                    if read_only:
                        conn = conn.execution_options(**{READ_ONLY: True})
                    with conn.begin():
                        return work(conn)
            except sa.exc.DBAPIError as exc:
                if attempt == self.attempts or not is_retryable(exc):
                    raise
                delay = min(0.01 * 2**attempt, 1.0) * (0.5 + random.random())
                log.info("retrying transaction after %s (attempt %d)", exc.orig, attempt)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()
