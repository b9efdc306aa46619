"""Replays: the index of replay records, and the jobs that run replays.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from migrations._backfill import backfill, micros

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replays",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("replay_of", sa.String(256), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("batch", sa.String(256), nullable=True),
        sa.Column("model_provider", sa.String(256), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=True),
        sa.Column("occurred_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_replays")),
    )
    op.create_index("ix_replays_tenant_replay_of", "replays", ["tenant", "replay_of", "idx"])
    op.create_index("ix_replays_tenant_batch", "replays", ["tenant", "batch", "idx"])
    op.create_table(
        "replay_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_jobs")),
    )
    op.create_index("ix_replay_jobs_tenant_created", "replay_jobs", ["tenant", "created_us"])
    # A ledger that already holds replay records gets them indexed now, in this transaction.
    backfill(op.get_bind(), "replays", "application/vnd.prov.replay.v1+json", _COLUMNS, _row)


_COLUMNS = (
    "idx",
    "tenant",
    "record_id",
    "replay_of",
    "mode",
    "verdict",
    "batch",
    "model_provider",
    "model_name",
    "model_version",
    "occurred_us",
)


def _row(idx: int, tenant: str, payload: dict[str, Any]) -> tuple[Any, ...]:
    """The replay's index row as this migration defined it."""
    model = payload["model"]
    return (
        idx,
        tenant,
        payload["id"],
        payload["replay_of"],
        payload["mode"],
        payload["verdict"],
        payload.get("batch"),
        model["provider"],
        model["name"],
        model.get("version"),
        micros(payload["occurred_at"]),
    )


def downgrade() -> None:
    op.drop_table("replay_jobs")
    op.drop_table("replays")
