"""UI sessions: the auditor pages' server-side sessions, stored by the hash of their id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
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
        "ui_sessions",
        sa.Column("id_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_ui_sessions")),
    )
    op.create_index("ix_ui_sessions_api_key_id", "ui_sessions", ["api_key_id", "created_us"])
    op.create_index("ix_ui_sessions_expires_us", "ui_sessions", ["expires_us"])


def downgrade() -> None:
    # Every browser is signed out; the pages send it to the sign-in form.
    op.drop_table("ui_sessions")
