"""Erasure: the blobs each decision references, erasure requests, retention rules and legal
holds.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from migrations._backfill import backfill_rows

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_DECISION = "application/vnd.prov.decision.v1+json"


def upgrade() -> None:
    op.create_table(
        "blob_refs",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "digest", "idx", name=op.f("pk_blob_refs")),
    )
    op.create_index("ix_blob_refs_idx", "blob_refs", ["idx"])
    op.create_table(
        "erasures",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_us", sa.BigInteger(), nullable=False),
        sa.Column("not_before_us", sa.BigInteger(), nullable=True),
        sa.Column("waiting_for", sa.Text(), nullable=True),
        sa.Column("first_idx", sa.BigInteger(), nullable=True),
        sa.Column("parts", sa.Integer(), nullable=True),
        sa.Column("digests", sa.Integer(), nullable=True),
        sa.Column("erased_us", sa.BigInteger(), nullable=True),
        sa.Column("done_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "request_id", name=op.f("pk_erasures")),
    )
    op.create_index("ix_erasures_state", "erasures", ["state"])
    op.create_table(
        "retention_rules",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("floor_days", sa.Integer(), nullable=False),
        sa.Column("expire_after_days", sa.Integer(), nullable=True),
        sa.Column("set_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_retention_rules")),
        sa.UniqueConstraint("tenant", "version", name="uq_retention_rules_tenant_version"),
    )
    op.create_table(
        "legal_holds",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("hold_id", sa.String(128), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("service", sa.String(128), nullable=True),
        sa.Column("decision_type", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(256), nullable=False),
        sa.Column("placed_us", sa.BigInteger(), nullable=False),
        sa.Column("released_idx", sa.BigInteger(), nullable=True),
        sa.Column("released_us", sa.BigInteger(), nullable=True),
        sa.Column("released_by", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "hold_id", name=op.f("pk_legal_holds")),
    )
    # No erasure, retention or hold record can precede this migration (the log refused their
    # payload types until now); the decisions already logged have their references indexed.
    backfill_rows(op.get_bind(), _DECISION, {"blob_refs": ("tenant", "digest", "idx")}, _references)


def _references(idx: int, tenant: str, payload: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """The decision's blob references, as `ledger.indexes.blob_refs.blob_references` reads
    them at this revision: its context snapshots' blobs and its prompt's messages blob."""
    found = {snapshot["blob"] for snapshot in payload.get("context") or [] if snapshot.get("blob")}
    messages = (payload.get("prompt") or {}).get("messages_blob")
    if messages:
        found.add(messages)
    return {"blob_refs": [(tenant, digest, idx) for digest in sorted(found)]}


def downgrade() -> None:
    op.drop_table("legal_holds")
    op.drop_table("retention_rules")
    op.drop_index("ix_erasures_state", table_name="erasures")
    op.drop_table("erasures")
    op.drop_index("ix_blob_refs_idx", table_name="blob_refs")
    op.drop_table("blob_refs")
