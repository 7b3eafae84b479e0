"""single sign-on: pending logins (state digest → sealed nonce and PKCE verifier)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_pending_logins",
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("code_verifier", sa.LargeBinary(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_digest"),
    )
    op.create_index(
        op.f("ix_sso_pending_logins_expires_at"), "sso_pending_logins", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sso_pending_logins_expires_at"), table_name="sso_pending_logins")
    op.drop_table("sso_pending_logins")
