"""Alembic environment: always run from code with a connection (see prodmanager.db.migrate)."""

from __future__ import annotations

from alembic import context

from prodmanager.db.migrate import VERSION_TABLE
from prodmanager.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `prodmanager db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
