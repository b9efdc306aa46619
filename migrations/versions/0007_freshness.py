"""Freshness: the dependency index, context changes, stale marks, and the webhook outbox.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from migrations._backfill import backfill_rows, micros

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "context_dependencies",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("version", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
    )
    op.create_index("ix_context_dependencies_idx", "context_dependencies", ["idx"])
    op.create_index(
        "ix_context_dependencies_tenant_key",
        "context_dependencies",
        ["tenant", "key", "version", "idx"],
    )
    op.create_table(
        "decision_freshness",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("valid_until_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_decision_freshness")),
    )
    op.create_index(
        "ix_decision_freshness_tenant_valid_until",
        "decision_freshness",
        ["tenant", "valid_until_us"],
    )
    op.create_table(
        "decision_threads",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("thread", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("idx", "thread", name=op.f("pk_decision_threads")),
    )
    op.create_index(
        "ix_decision_threads_tenant_thread", "decision_threads", ["tenant", "thread", "idx"]
    )
    op.create_table(
        "context_changes",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("version", sa.String(256), nullable=False),
        sa.Column("changed_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_context_changes")),
    )
    op.create_index("ix_context_changes_tenant_key", "context_changes", ["tenant", "key", "idx"])
    op.create_index(
        "ix_context_changes_tenant_key_version",
        "context_changes",
        ["tenant", "key", "version", "idx"],
    )
    op.create_table(
        "stale_marks",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("version", sa.String(256), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("change_idx", sa.BigInteger(), nullable=False),
        sa.Column("stale_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("idx", "key", "version", name=op.f("pk_stale_marks")),
    )
    op.create_index("ix_stale_marks_tenant_stale", "stale_marks", ["tenant", "stale_us", "idx"])
    op.create_index("ix_stale_marks_change", "stale_marks", ["change_idx", "idx"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.String(256), nullable=False),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("deleted_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index("ix_subscriptions_tenant", "subscriptions", ["tenant", "created_us"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscription_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("subject_idx", sa.BigInteger(), nullable=False),
        sa.Column("first_idx", sa.BigInteger(), nullable=False),
        sa.Column("last_idx", sa.BigInteger(), nullable=False),
        sa.Column("cursor_idx", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_us", sa.BigInteger(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_state_next", "outbox", ["state", "next_attempt_us"])
    op.create_index("ix_outbox_subscription", "outbox", ["subscription_id", "id"])
    # Decisions already in the log get their dependencies and expiry indexed now; no context
    # change can precede this migration, so nothing is stale yet.
    backfill_rows(
        op.get_bind(),
        "application/vnd.prov.decision.v1+json",
        {
            "context_dependencies": ("idx", "tenant", "key", "version"),
            "decision_freshness": ("idx", "tenant", "valid_until_us"),
            "decision_threads": ("idx", "tenant", "thread"),
        },
        _rows,
    )


def _rows(idx: int, tenant: str, payload: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """A decision's dependency and freshness rows as this migration defined them."""
    freshness = payload.get("freshness") or None
    context = payload.get("context") or []
    if freshness is None and not context:
        return {}
    dependencies: dict[tuple[str, str], None] = {}
    expiries = []
    if freshness is not None:
        for dependency in freshness.get("depends_on") or []:
            dependencies[(dependency["key"], dependency["version"])] = None
        if freshness.get("valid_until"):
            expiries.append(micros(freshness["valid_until"]))
    for snapshot in context:
        dependencies[(snapshot["name"], snapshot["version"])] = None
        if snapshot.get("valid_until"):
            expiries.append(micros(snapshot["valid_until"]))
    threads = []
    trace_id = (payload.get("links") or {}).get("trace_id")
    if trace_id:
        threads.append(f"trace:{trace_id}")
    attributes = payload.get("attributes") or {}
    for name in ("gen_ai.conversation.id", "conversation_id"):
        value = attributes.get(name)
        if isinstance(value, str) and value and len(value) <= 243:
            threads.append(f"conversation:{value}")
            break
    return {
        "context_dependencies": [(idx, tenant, key, version) for key, version in dependencies],
        "decision_freshness": [(idx, tenant, min(expiries) if expiries else None)],
        "decision_threads": [(idx, tenant, thread) for thread in threads] if dependencies else [],
    }


def downgrade() -> None:
    for table in (
        "outbox",
        "subscriptions",
        "stale_marks",
        "context_changes",
        "decision_threads",
        "decision_freshness",
        "context_dependencies",
    ):
        op.drop_table(table)
