"""Scratch MariaDB databases for the benchmarks: created empty (utf8mb4), dropped afterwards."""

from __future__ import annotations

import os

import sqlalchemy as sa

MARIADB_SERVER = os.environ.get("PRODAGENT_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")


def _admin(sql: str, server: str) -> None:
    admin = sa.create_engine(server + "/", poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(sql))
    admin.dispose()


def create_database(name: str, server: str = MARIADB_SERVER) -> str:
    """An empty database `name` (dropped first if it exists); its URL."""
    _admin(f"DROP DATABASE IF EXISTS {name}", server)
    _admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4", server)
    return f"{server}/{name}"


def drop_database(name: str, server: str = MARIADB_SERVER) -> None:
    _admin(f"DROP DATABASE IF EXISTS {name}", server)
