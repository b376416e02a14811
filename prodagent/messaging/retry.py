"""Run a unit of database work in one transaction, retrying what is transient.

Deadlocks and lock-wait timeouts (MySQL 1213/1205, SQLite "database is locked") are retried
at once with jitter; lost connections (the server restarted, `KILL`) are retried after a pause
until the configured budget runs out. Callers never see these errors; a handler never does.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from prodagent.errors import DatabaseUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

LOCK_CONFLICT_CODES = {1213, 1205}  # deadlock, lock wait timeout
CONNECTION_LOST_CODES = {2002, 2003, 2006, 2013, 2014, 2055, 1053, 1077, 1927, 4031}


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_lock_conflict(exc: BaseException) -> bool:
    if not isinstance(exc, sa_exc.SQLAlchemyError):
        return False  # e.g. an HTTP "connection refused" of a remote service is not the database's
    if _mysql_code(exc) in LOCK_CONFLICT_CODES:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text


def is_connection_lost(exc: BaseException) -> bool:
    if not isinstance(exc, sa_exc.SQLAlchemyError):
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if _mysql_code(exc) in CONNECTION_LOST_CODES:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return "lost connection" in text or "server has gone away" in text or "connection refused" in text


class TransactionRunner:
    """Runs `work(conn)` inside `engine.begin()` with the retry policy above."""

    def __init__(self, engine: sa.Engine, connect_retries: int = 30, retry_wait_s: float = 1.0) -> None:
        self.engine = engine
        self.connect_retries = connect_retries
        self.retry_wait_s = retry_wait_s
        self.lock_retries = 0  # counters, for benchmarks and tests
        self.reconnects = 0

    def run(self, work: Callable[[sa.Connection], T]) -> T:
        conflicts = 0
        lost = 0
        while True:
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except (sa_exc.OperationalError, sa_exc.InternalError, sa_exc.InterfaceError) as exc:
                if is_lock_conflict(exc):
                    conflicts += 1
                    self.lock_retries += 1
                    time.sleep(random.uniform(0, min(0.05 * conflicts, 0.5)))
                    continue
                if is_connection_lost(exc) or isinstance(exc, sa_exc.InterfaceError):
                    lost += 1
                    self.reconnects += 1
                    if lost > self.connect_retries:
                        raise DatabaseUnavailable(f"database unreachable after {lost} tries: {exc}") from exc
                    log.warning("database connection lost (%s); retry %d in %.1fs", exc.__class__.__name__, lost, self.retry_wait_s)
                    self.engine.dispose()
                    time.sleep(self.retry_wait_s)
                    continue
                raise
