"""Initial ledger schema: the log, its tree nodes, checkpoints and the service key registry.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LOG_TABLES = ("log_entries", "tree_nodes", "checkpoints")


def upgrade() -> None:
    op.create_table(
        "ledger_info",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ledger_info")),
    )
    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(256), nullable=False),
        sa.Column("payload_type", sa.String(128), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("integrated_us", sa.BigInteger(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_log_entries")),
        sa.UniqueConstraint("tenant", "record_id", name="uq_log_entries_tenant_record_id"),
    )
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_tree_nodes")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "service_keys",
        sa.Column("keyid", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger(), nullable=False),
        sa.Column("valid_until_us", sa.BigInteger(), nullable=True),
        sa.Column("revoked_us", sa.BigInteger(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("keyid", name=op.f("pk_service_keys")),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_append_only()
    else:
        _sqlite_append_only()


def _postgres_append_only() -> None:
    # Envelopes are a few KB of base64 JSON. Uncompressed and inline up to a page, the
    # full-log scan of `prov verify` is a sequential read rather than TOAST lookups and
    # decompression; larger envelopes still go out of line.
    op.execute("ALTER TABLE log_entries ALTER COLUMN envelope SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE log_entries SET (toast_tuple_target = 8160)")
    op.execute(
        """
        CREATE FUNCTION prov_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'prov: % on % is not allowed: the log is append-only',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in LOG_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION prov_reject_mutation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION prov_reject_mutation()"
        )
        # ENABLE ALWAYS: the triggers fire even under session_replication_role = replica.
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only")
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate")


def _sqlite_append_only() -> None:
    for table in LOG_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'prov: {operation} on {table} is not allowed: "
                "the log is append-only'); END"
            )


def downgrade() -> None:
    # The log is append-only: there is no downgrade that keeps its promise.
    raise RuntimeError("the initial ledger schema cannot be downgraded")
