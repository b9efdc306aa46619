"""Monitors: the registry of monitor versions, breaches, value history and flagged decisions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No monitor or breach record can precede this migration (the log refused their
    # payload types until now), so there is nothing to backfill.
    op.create_table(
        "monitors",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("monitor_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("applied_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_monitors")),
        sa.UniqueConstraint(
            "tenant", "monitor_id", "version", name="uq_monitors_tenant_monitor_version"
        ),
    )
    op.create_table(
        "monitor_breaches",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("monitor_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("limit_value", sa.String(64), nullable=False),
        sa.Column("first_idx", sa.BigInteger(), nullable=False),
        sa.Column("last_idx", sa.BigInteger(), nullable=False),
        sa.Column("decision_idx", sa.BigInteger(), nullable=True),
        sa.Column("occurred_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_monitor_breaches")),
    )
    op.create_index(
        "ix_monitor_breaches_tenant_monitor", "monitor_breaches", ["tenant", "monitor_id", "idx"]
    )
    op.create_index("ix_monitor_breaches_decision", "monitor_breaches", ["decision_idx"])
    op.create_table(
        "monitor_samples",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("monitor_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("group_key", sa.String(512), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("integrated_us", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "monitor_id", "group_key", "idx", name=op.f("pk_monitor_samples")
        ),
    )
    op.create_index(
        "ix_monitor_samples_monitor_idx", "monitor_samples", ["tenant", "monitor_id", "idx"]
    )
    op.create_table(
        "monitor_flags",
        sa.Column("decision_idx", sa.BigInteger(), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("monitor_id", sa.String(64), nullable=False),
        sa.Column("group_key", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint(
            "decision_idx", "monitor_id", "group_key", name=op.f("pk_monitor_flags")
        ),
    )


def downgrade() -> None:
    op.drop_table("monitor_flags")
    op.drop_table("monitor_samples")
    op.drop_table("monitor_breaches")
    op.drop_table("monitors")
