"""etcd backups of local clusters

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("schedule", sa.String(length=64), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("operation_id", sa.String(length=32), nullable=True),
        sa.Column("storage", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("etcd_revision", sa.BigInteger(), nullable=False),
        sa.Column("total_keys", sa.Integer(), nullable=False),
        sa.Column("kubernetes_version", sa.String(length=32), nullable=False),
        sa.Column("etcd_version", sa.String(length=32), nullable=False),
        sa.Column("control_planes", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("holder", sa.String(length=160), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_backups_status"), "backups", ["status"], unique=False)
    op.create_index(op.f("ix_backups_operation_id"), "backups", ["operation_id"], unique=False)
    op.create_index("ix_backups_cluster_created", "backups", ["cluster", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_backups_cluster_created", table_name="backups")
    op.drop_index(op.f("ix_backups_operation_id"), table_name="backups")
    op.drop_index(op.f("ix_backups_status"), table_name="backups")
    op.drop_table("backups")
