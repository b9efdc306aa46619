"""The decision index: searchable columns of each decision, filled at append time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from alembic import op

from migrations._backfill import backfill, micros

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
    backfill(op.get_bind(), "decisions", "application/vnd.prov.decision.v1+json", _COLUMNS, _row)


_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "service",
    "decision_type",
    "occurred_us",
    "model_name",
    "model_version",
    "subject",
    "delegator",
    "output",
)


def _row(idx: int, _tenant: str, payload: dict[str, Any]) -> tuple[Any, ...]:
    """The decision's index row as this migration defined it (the tenant is the payload's)."""
    delegation = payload.get("delegation") or []
    return (
        idx,
        payload["tenant"],
        payload["id"],
        payload["service"],
        payload["decision_type"],
        micros(payload["occurred_at"]),
        payload["model"]["name"],
        payload["model"]["version"],
        payload.get("subject"),
        delegation[0]["iss"] if delegation else None,
        msgspec.json.encode(payload["output"]["decision"]).decode(),
    )


def downgrade() -> None:
    op.drop_table("decisions")
