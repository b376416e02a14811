"""Engines for the agent database: SQLite (embedded default) and MariaDB/MySQL.

SQLite runs in WAL mode with a busy timeout so that several component processes can share one
file; MariaDB sessions run at READ COMMITTED, which keeps `SKIP LOCKED` claims from taking gap
locks and makes deadlocks rarer (the service still retries the ones that happen).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from prodagent.errors import DatabaseUnsupported


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


# The message service joins id lists as JSON_TABLE (see prodagent/messaging/queries.py).
MIN_MARIADB = (10, 6)
MIN_MYSQL = (8, 0)


def unsupported_server(is_mariadb: bool, version: tuple[int, ...] | None) -> str | None:
    """Why a MariaDB/MySQL server of this version cannot serve the agent (None if it can)."""
    if version is None:
        return None
    least, name = (MIN_MARIADB, "MariaDB") if is_mariadb else (MIN_MYSQL, "MySQL")
    if tuple(version[:2]) >= least:
        return None
    have = ".".join(map(str, version[:3]))
    need = ".".join(map(str, least))
    return f"{name} {have} is too old for prodagent: it needs {name} >= {need} (JSON_TABLE)"


def check_server(conn: sa.Connection) -> None:
    """Refuse a MariaDB/MySQL server too old for the agent's statements, with a clear message."""
    dialect = conn.dialect
    if dialect.name == "sqlite":
        return
    why = unsupported_server(bool(getattr(dialect, "is_mariadb", False)), dialect.server_version_info)
    if why:
        raise DatabaseUnsupported(why)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # The pysqlite driver's own transaction handling is switched off so BEGIN IMMEDIATE is ours.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # IMMEDIATE takes the write lock up front: no deadlock-prone read-to-write lock upgrades.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create an engine with the settings each backend needs."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Every use goes through TransactionRunner, which ends each transaction itself and retries
    # one that meets a dead connection: a pre-ping and a ROLLBACK on return would only add two
    # round trips to every transaction.
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_reset_on_return=None,
        pool_recycle=3600,
        isolation_level="READ COMMITTED",
    )
