"""Tampering: change stored bytes directly with SQL and expect `prov verify` to name the entry.

The append-only triggers are dropped first, as an attacker with database access would, so
these tests show that detection rests on the hashes and signatures, not on the triggers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from ledger.ledger import Ledger
from ledger.records.dsse import decode_envelope
from ledger.storage.db import make_engine
from ledger.storage.schema import LOG_TABLES
from tests.conftest import TEST_ORIGIN
from tests.support import demo_envelopes, prov


def disable_append_only_guards(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in LOG_TABLES:
            if engine.dialect.name == "postgresql":
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                for operation in ("update", "delete"):
                    connection.execute(text(f"DROP TRIGGER {table}_no_{operation}"))


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    raws = demo_envelopes(ledger.engine, 60)
    for start in (0, 20, 40):
        ledger.append(raws[start : start + 20])
    disable_append_only_guards(ledger.engine)
    return ledger


def verify_fails(db_url: str, key_path: Path, *fragments: str, signatures: bool = False) -> None:
    run = prov(["verify", *(["--signatures"] if signatures else [])], db=db_url, key=key_path)
    assert run.code == 1, run
    assert run.out == ""
    [line] = run.err.splitlines()
    for fragment in fragments:
        assert fragment in line, line


def test_untouched_log_verifies(filled: Ledger, db_url: str, key_path: Path) -> None:
    run = prov(["verify", "--signatures"], db=db_url, key=key_path)
    assert run.code == 0, run.err
    assert "ok: size 60" in run.out
    assert "4 checkpoints" in run.out
    assert "60 signatures" in run.out


def _stored_envelope(engine: Engine, index: int) -> bytes:
    with engine.connect() as connection:
        return bytes(
            connection.execute(
                text("SELECT envelope FROM log_entries WHERE idx = :i"), {"i": index}
            ).scalar_one()
        )


def test_a_changed_payload_byte(filled: Ledger, db_url: str, key_path: Path) -> None:
    envelope = bytearray(_stored_envelope(filled.engine, 17))
    position = envelope.index(b'"payload":"') + 40
    envelope[position] = ord("A") if envelope[position] != ord("A") else ord("B")
    with filled.engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET envelope = :e WHERE idx = 17"), {"e": bytes(envelope)}
        )
    verify_fails(db_url, key_path, "entry 17:", "leaf-mismatch")


def test_a_changed_leaf_hash(filled: Ledger, db_url: str, key_path: Path) -> None:
    with filled.engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET leaf_hash = :h WHERE idx = 23"), {"h": bytes(32)}
        )
    verify_fails(db_url, key_path, "entry 23:", "leaf-mismatch")


def test_a_deleted_row(filled: Ledger, db_url: str, key_path: Path) -> None:
    with filled.engine.begin() as connection:
        connection.execute(text("DELETE FROM log_entries WHERE idx = 30"))
    verify_fails(db_url, key_path, "entry 30:", "missing")


def test_two_swapped_rows(filled: Ledger, db_url: str, key_path: Path) -> None:
    columns = "tenant, record_id, payload_type, envelope, integrated_us, leaf_hash"
    with filled.engine.begin() as connection:
        rows = {
            row[0]: row[1:]
            for row in connection.execute(
                text(f"SELECT idx, {columns} FROM log_entries WHERE idx IN (10, 11)")
            )
        }
        # Move both out of the way of the unique (tenant, record_id) key, then swap them in.
        connection.execute(text("DELETE FROM log_entries WHERE idx IN (10, 11)"))
        for index, other in ((10, 11), (11, 10)):
            connection.execute(
                text(
                    f"INSERT INTO log_entries (idx, {columns}) VALUES (:i, :a, :b, :c, :d, :e, :f)"
                ),
                dict(zip("iabcdef", (index, *rows[other]), strict=True)),
            )
    verify_fails(db_url, key_path, "entry 10:", "leaf-mismatch")


def test_a_truncated_tail(filled: Ledger, db_url: str, key_path: Path) -> None:
    with filled.engine.begin() as connection:
        connection.execute(text("DELETE FROM log_entries WHERE idx >= 45"))
    verify_fails(db_url, key_path, "entry 45:", "truncated", "60 entries")


def test_a_checkpoint_from_a_forked_history(
    filled: Ledger, db_url: str, key_path: Path, tmp_path: Path, engine: Engine
) -> None:
    # The same ledger key signs a different history of the same size.
    fork = Ledger.init(make_engine(str(tmp_path / "fork.db")), key_path, TEST_ORIGIN)
    fork.append(demo_envelopes(fork.engine, 60, seed=99))
    forked_note = fork.latest_checkpoint().note
    fork.close()
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE checkpoints SET note = :n WHERE tree_size = 60"), {"n": forked_note}
        )
    verify_fails(db_url, key_path, "entry 59:", "checkpoint-mismatch")


def test_a_changed_tree_node(filled: Ledger, db_url: str, key_path: Path) -> None:
    with filled.engine.begin() as connection:
        connection.execute(
            text("UPDATE tree_nodes SET hash = :h WHERE level = 2 AND idx = 3"), {"h": bytes(32)}
        )
    verify_fails(db_url, key_path, "entry 12:", "tree-node")


def test_a_swapped_service_key_fails_the_signature_recheck(
    filled: Ledger, db_url: str, key_path: Path
) -> None:
    with filled.engine.connect() as connection:
        first_keyid = connection.execute(
            text("SELECT keyid FROM service_keys ORDER BY keyid LIMIT 1")
        ).scalar_one()
    first_signed = next(
        index
        for index in range(60)
        if decode_envelope(_stored_envelope(filled.engine, index)).signatures[0].keyid
        == first_keyid
    )
    with filled.engine.begin() as connection:
        connection.execute(
            text("UPDATE service_keys SET public_key = :k WHERE keyid = :id"),
            {"k": bytes(range(32)), "id": first_keyid},
        )
    # Hashes alone still verify: the stored bytes did not change.
    assert prov(["verify"], db=db_url, key=key_path).code == 0
    verify_fails(db_url, key_path, f"entry {first_signed}:", "bad-signature", signatures=True)


def test_appending_through_the_triggers_is_refused(ledger: Ledger) -> None:
    ledger.append(demo_envelopes(ledger.engine, 2))
    for statement in (
        "UPDATE log_entries SET tenant = 'x' WHERE idx = 0",
        "DELETE FROM log_entries WHERE idx = 1",
        "DELETE FROM checkpoints",
        "UPDATE tree_nodes SET hash = hash",
    ):
        with pytest.raises(Exception, match="append-only"), ledger.engine.begin() as connection:
            connection.execute(text(statement))
    if ledger.engine.dialect.name == "postgresql":
        for table in LOG_TABLES:
            with pytest.raises(Exception, match="append-only"), ledger.engine.begin() as connection:
                connection.execute(text(f"TRUNCATE {table}"))
    assert ledger.verify()
