"""Create and upgrade the agent's schema with Alembic, safely from several processes at once.

`upgrade(url)` is what `prodagent db upgrade` and every component start run. Concurrent callers
are serialised: MariaDB by a named lock (GET_LOCK), SQLite by a file lock beside the database.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from prodagent.db.engine import check_server, is_sqlite, make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "prodagent_alembic_version"


def alembic_config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    if is_sqlite(engine):
        lock_path = Path(str(engine.url.database) + ".migrate.lock")
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with engine.connect() as conn:
                yield conn
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT GET_LOCK('prodagent_migrate', 120)"))
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT RELEASE_LOCK('prodagent_migrate')"))
            conn.commit()


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def upgrade(url: str, revision: str = "head") -> str | None:
    """Bring the database at `url` to `revision`; return the revision it is at afterwards."""
    engine = make_engine(url, pool_size=1)
    try:
        with _migration_lock(engine) as conn:
            check_server(conn)
            if current_revision(conn) != head_revision() or revision != "head":
                command.upgrade(alembic_config(conn), revision)
                conn.commit()
            return current_revision(conn)
    finally:
        engine.dispose()
