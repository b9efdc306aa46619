"""Sealed blobs: each blob's subject and data key, the database object store, and the
erasure that dropped a blob.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Blobs stored before keep their plaintext in `content` (key_id NULL) until erased: the
    # migration has no key-encryption key to seal them with.
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("subject", sa.String(256), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("erasure_idx", sa.BigInteger(), nullable=True))
    op.create_index("ix_blobs_tenant_subject", "blobs", ["tenant", "subject"])
    op.create_table(
        "blob_objects",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_blob_objects")),
    )


def downgrade() -> None:
    op.drop_table("blob_objects")
    op.drop_index("ix_blobs_tenant_subject", table_name="blobs")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("erasure_idx")
        batch.drop_column("key_id")
        batch.drop_column("subject")
