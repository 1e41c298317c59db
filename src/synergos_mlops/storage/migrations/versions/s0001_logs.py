"""Central logs: the log records of the orchestrator and every participant, with the run.

Revision ID: s0001_logs
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001_logs"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "synergos_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("run_uuid", sa.String(32), nullable=True),
        sa.Column("collaboration", sa.String(250), nullable=True),
        sa.Column("participant", sa.String(250), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("logger", sa.String(250), nullable=False),
        sa.Column("role", sa.String(20), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=True),
    )
    op.create_index("synergos_logs_run_time", "synergos_logs", ["run_uuid", "timestamp", "id"])
    op.create_index(
        "synergos_logs_run_participant_level",
        "synergos_logs",
        ["run_uuid", "participant", "level"],
    )
    op.create_index(
        "synergos_logs_collaboration_time", "synergos_logs", ["collaboration", "timestamp"]
    )


def downgrade() -> None:
    op.drop_table("synergos_logs")
