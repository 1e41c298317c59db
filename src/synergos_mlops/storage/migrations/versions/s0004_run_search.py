"""A trigram index of the runs' Synergos ids for the tree's search box: on SQLite an FTS5
table kept by triggers on MLflow's ``tags``, on PostgreSQL a ``pg_trgm`` GIN index (see
``storage.run_search``, which ``serve`` also calls at every start).

Revision ID: s0004_run_search
Revises: s0003_read_indexes
"""

from __future__ import annotations

from alembic import op

revision = "s0004_run_search"
down_revision = "s0003_read_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from synergos_mlops.storage.run_search import ensure_run_search

    # A database without MLflow's tables yet gets the index when serve first starts on it.
    ensure_run_search(op.get_bind())


def downgrade() -> None:
    from synergos_mlops.storage.run_search import SEARCH_OBJECTS, SEARCH_TABLE, TRIGRAM_INDEX

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in SEARCH_OBJECTS[1:]:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute(f"DROP TABLE IF EXISTS {SEARCH_TABLE}")
    elif bind.dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")
