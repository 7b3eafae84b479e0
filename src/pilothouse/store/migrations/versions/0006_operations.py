"""durable operations (upgrades, rollouts, backups, restores)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("cluster", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("requested", sa.String(length=16), nullable=True),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_operations_kind"), "operations", ["kind"], unique=False)
    op.create_index(op.f("ix_operations_cluster"), "operations", ["cluster"], unique=False)
    op.create_index(op.f("ix_operations_phase"), "operations", ["phase"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_operations_phase"), table_name="operations")
    op.drop_index(op.f("ix_operations_cluster"), table_name="operations")
    op.drop_index(op.f("ix_operations_kind"), table_name="operations")
    op.drop_table("operations")
