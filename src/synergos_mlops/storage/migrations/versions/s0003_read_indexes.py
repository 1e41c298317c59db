"""Indexes on MLflow's tables for the reads of federated runs, so that they cost the same on a
store of one run and of thousands.

MLflow's schema finds runs by id and tags by (key, run): finding the runs of one experiment,
or a run by its Synergos id, or a federation run's participants by their
``mlflow.parentRunId`` tag, read every run of the store. Ours (named ``synergos_*``, created
here and never by MLflow's migrations, which do not know them):

- ``synergos_runs_experiment``: ``runs (experiment_id, lifecycle_stage)``;
- ``synergos_experiments_name``: ``experiments (name)`` (MLflow's unique index starts with
  the workspace) and ``synergos_experiment_tags_experiment``: ``experiment_tags
  (experiment_id)`` (MLflow's key starts with the tag's key);
- ``synergos_tags_value``: ``tags (key, value)``, for the few tag keys these reads look up
  by value (:data:`LOOKUP_KEYS`). On PostgreSQL the index holds those keys' rows only (a
  partial index): a b-tree entry must stay under ~2.7 kB, and other tags (a note, a model's
  history) may hold 8,000 characters. The reads name the key as a literal, so the planner
  sees that the index covers them. SQLite has no such limit: the whole table.

The definitions live in ``storage.schema.READ_INDEXES``.

Revision ID: s0003_read_indexes
Revises: s0002_logs_ids
"""

from __future__ import annotations

from alembic import op

revision = "s0003_read_indexes"
down_revision = "s0002_logs_ids"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from synergos_mlops.storage.schema import ensure_read_indexes

    # A database that has no MLflow tables yet gets them when its first server starts; serve
    # then creates these indexes (storage.schema.ensure_read_indexes, at every start).
    ensure_read_indexes(op.get_bind())


def downgrade() -> None:
    op.drop_index("synergos_tags_value", "tags")
    op.drop_index("synergos_experiment_tags_experiment", "experiment_tags")
    op.drop_index("synergos_experiments_name", "experiments")
    op.drop_index("synergos_runs_experiment", "runs")
