"""The decision index: searchable columns of each decision, filled at append time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger.indexes.decisions import backfill

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_decisions_tenant_occurred": ["tenant", "occurred_us", "idx"],
    "ix_decisions_tenant_service": ["tenant", "service", "decision_type", "occurred_us", "idx"],
    "ix_decisions_tenant_type": ["tenant", "decision_type", "occurred_us", "idx"],
    "ix_decisions_tenant_model": ["tenant", "model_name", "model_version", "occurred_us", "idx"],
    "ix_decisions_tenant_subject": ["tenant", "subject", "occurred_us", "idx"],
    "ix_decisions_tenant_delegator": ["tenant", "delegator", "occurred_us", "idx"],
}


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("decision_type", sa.String(128), nullable=False),
        sa.Column("occurred_us", sa.BigInteger(), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=False),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("delegator", sa.String(256), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_decisions")),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "decisions", columns)
    # A ledger that already holds decisions gets them indexed now, in this transaction.
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("decisions")
