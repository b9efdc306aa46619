"""OTLP ingest: spans waiting for their trace, the traces seen, and who signed a decision.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every decision admitted before this migration was signed by its producer: the
    # ledger's record key could not sign a decision until now, so the default is the truth.
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(
            sa.Column(
                "attestation",
                sa.String(16),
                nullable=False,
                server_default="producer-signed",
            )
        )
    op.create_table(
        "otlp_items",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("item", sa.String(40), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "trace_id", "span_id", "item", name=op.f("pk_otlp_items")
        ),
    )
    op.create_table(
        "otlp_traces",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("first_us", sa.BigInteger(), nullable=False),
        sa.Column("last_us", sa.BigInteger(), nullable=False),
        sa.Column("ready_us", sa.BigInteger(), nullable=True),
        sa.Column("claimed_us", sa.BigInteger(), nullable=True),
        sa.Column("decisions", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "trace_id", name=op.f("pk_otlp_traces")),
    )
    op.create_index("ix_otlp_traces_state_last", "otlp_traces", ["state", "last_us"])


def downgrade() -> None:
    op.drop_index("ix_otlp_traces_state_last", table_name="otlp_traces")
    op.drop_table("otlp_traces")
    op.drop_table("otlp_items")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("attestation")
