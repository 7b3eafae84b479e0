"""kubernetes events of the fleet

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kube_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("involved_kind", sa.Text(), nullable=False),
        sa.Column("involved_name", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("involved_kind_key", sa.Text(), nullable=False),
        sa.Column("reason_key", sa.Text(), nullable=False),
        sa.Column("type_key", sa.Text(), nullable=False),
        sa.Column("message_key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cluster_id", "namespace", "name"),
    )
    op.create_index(
        "ix_kube_events_cluster_last", "kube_events", ["cluster_id", "last_timestamp"], unique=False
    )
    op.create_index(
        "ix_kube_events_object",
        "kube_events",
        ["cluster_id", "involved_kind_key", "involved_name"],
        unique=False,
    )
    op.create_index("ix_kube_events_reason", "kube_events", ["cluster_id", "reason_key"], unique=False)
    op.create_index(op.f("ix_kube_events_last_timestamp"), "kube_events", ["last_timestamp"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_kube_events_last_timestamp"), table_name="kube_events")
    op.drop_index("ix_kube_events_reason", table_name="kube_events")
    op.drop_index("ix_kube_events_object", table_name="kube_events")
    op.drop_index("ix_kube_events_cluster_last", table_name="kube_events")
    op.drop_table("kube_events")
