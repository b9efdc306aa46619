"""Delegation: principals, revocations, verified invocations and each tenant's mode.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No backfill: principal and revocation records are new payload types, and decisions
    # logged before this revision carry no invocation.
    op.create_table(
        "principals",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_principals")),
    )
    op.create_index("ix_principals_tenant_did", "principals", ["tenant", "did", "idx"])
    op.create_index("ix_principals_tenant_name", "principals", ["tenant", "name", "idx"])
    op.create_table(
        "revocations",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("cid", sa.LargeBinary(36), nullable=False),
        sa.Column("revoker", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_revocations")),
    )
    op.create_index("ix_revocations_tenant_cid", "revocations", ["tenant", "cid", "idx"])
    op.create_table(
        "invocations",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("cid", sa.LargeBinary(36), nullable=False),
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("nonce", sa.LargeBinary(64), nullable=False),
        sa.Column("root", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_invocations")),
        sa.UniqueConstraint("cid", name="uq_invocations_cid"),
        sa.UniqueConstraint("issuer", "nonce", name="uq_invocations_issuer_nonce"),
    )
    op.create_index("ix_invocations_tenant_root", "invocations", ["tenant", "root", "idx"])
    op.create_table(
        "delegation_modes",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_delegation_modes")),
    )


def downgrade() -> None:
    op.drop_table("delegation_modes")
    op.drop_table("invocations")
    op.drop_table("revocations")
    op.drop_table("principals")
