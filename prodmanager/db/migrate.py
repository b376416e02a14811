"""Alembic migrations of ProdManager's schema, run from code (`prodmanager db upgrade`, and by
`prodmanager serve` at start). Its version table is `prodmanager_alembic_version`, so the schema can
live in the same database as the agent's. On MariaDB a named lock lets several `serve` processes
start at once; on SQLite the upgrade runs inside one BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "prodmanager_alembic_version"
LOCK_NAME = "prodmanager_migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; a no-op when it is already there."""
    with engine.begin() as conn:
        mysql = conn.dialect.name in ("mysql", "mariadb")
        if mysql:
            got = conn.execute(sa.text("SELECT GET_LOCK(:n, 120)"), {"n": LOCK_NAME}).scalar()
            if got != 1:
                raise RuntimeError("could not take the migration lock within 120 s")
        try:
            command.upgrade(alembic_config(conn), revision)
        finally:
            if mysql:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": LOCK_NAME})


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
