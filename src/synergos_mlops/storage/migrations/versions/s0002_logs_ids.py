"""Central logs: the federated ids as text and a client-generated record id.

A record names its run by collaboration, project, experiment and run id, so a record that
arrives before its run exists (GELF from a worker that starts first) is shown with the run
once it is there; ``record_id`` makes a batch sent twice (a retry after the server was away)
store its records once.

Revision ID: s0002_logs_ids
Revises: s0001_logs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0002_logs_ids"
down_revision = "s0001_logs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("synergos_logs") as batch:
        batch.add_column(sa.Column("record_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("project", sa.String(250), nullable=True))
        batch.add_column(sa.Column("experiment", sa.String(250), nullable=True))
        batch.add_column(sa.Column("run", sa.String(250), nullable=True))
    op.create_index("synergos_logs_record_id", "synergos_logs", ["record_id"], unique=True)
    op.create_index(
        "synergos_logs_ids_time",
        "synergos_logs",
        ["collaboration", "project", "experiment", "run", "id"],
    )
    op.create_index("synergos_logs_time", "synergos_logs", ["timestamp"])


def downgrade() -> None:
    op.drop_index("synergos_logs_time", "synergos_logs")
    op.drop_index("synergos_logs_ids_time", "synergos_logs")
    op.drop_index("synergos_logs_record_id", "synergos_logs")
    with op.batch_alter_table("synergos_logs") as batch:
        batch.drop_column("run")
        batch.drop_column("experiment")
        batch.drop_column("project")
        batch.drop_column("record_id")
