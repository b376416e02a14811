"""Alembic environment: runs migrations on the connection handed over by `prodagent.db.migrate`."""

from alembic import context

from prodagent.db.migrate import VERSION_TABLE
from prodagent.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
