"""Policies: the registry of policy versions, and the index of policy checks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No policy or policy-check record can precede this migration (the log refused their
    # payload types until now), so there is nothing to backfill.
    op.create_table(
        "policies",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("policy_id", sa.String(256), nullable=False),
        sa.Column("version", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("registered_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_policies")),
        sa.UniqueConstraint(
            "tenant", "policy_id", "version", name="uq_policies_tenant_policy_version"
        ),
    )
    op.create_index("ix_policies_tenant_digest", "policies", ["tenant", "digest"])
    op.create_table(
        "policy_checks",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("decision_id", sa.String(256), nullable=False),
        sa.Column("policy_id", sa.String(256), nullable=False),
        sa.Column("version", sa.String(256), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("batch", sa.String(256), nullable=True),
        sa.Column("occurred_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_policy_checks")),
    )
    op.create_index(
        "ix_policy_checks_tenant_decision", "policy_checks", ["tenant", "decision_id", "idx"]
    )
    op.create_index("ix_policy_checks_tenant_batch", "policy_checks", ["tenant", "batch", "idx"])


def downgrade() -> None:
    op.drop_table("policy_checks")
    op.drop_table("policies")
