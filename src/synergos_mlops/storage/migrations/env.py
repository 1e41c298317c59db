"""Alembic environment of our own tables: the connection comes from the caller
(``synergos_mlops.storage.schema.upgrade``); the revision lives in our own version table, so
MLflow's ``alembic_version`` is never touched."""

from __future__ import annotations

from alembic import context

from synergos_mlops.storage.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
