"""Witnesses: the cosignatures each stored checkpoint received (docs/witness.md).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("witness", sa.String(256), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("cosigned_s", sa.BigInteger(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", "witness", name=op.f("pk_checkpoint_cosignatures")),
    )
    op.create_index(
        "ix_checkpoint_cosignatures_witness",
        "checkpoint_cosignatures",
        ["witness", "tree_size"],
    )


def downgrade() -> None:
    op.drop_index("ix_checkpoint_cosignatures_witness", "checkpoint_cosignatures")
    op.drop_table("checkpoint_cosignatures")
