"""The blob core: salted blobs hide low-entropy content, sealing binds bytes to their
tenant and digest, subject keys live outside the database, and the vault refuses what it
cannot vouch for. Property tests check each codec against its plain definition; tamper
tests change stored bytes directly and expect the read to name the blob."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from ledger.blobs.digest import digest_of
from ledger.blobs.kek import KeyUnwrapFailed, default_kek_path, ensure_kek, load_kek
from ledger.blobs.salted import HEADER_BYTES, content_of, is_salted, opens_to, salt_of, salted
from ledger.blobs.sealing import associated_data, seal, unseal
from ledger.blobs.stores.database import DatabaseStore
from ledger.blobs.subject_keys import SubjectKeys, data_keys
from ledger.blobs.vault import object_name
from ledger.errors import (
    BlobErased,
    BlobUnreadable,
    DigestMismatch,
    LedgerNotInitialized,
    NotFound,
)
from ledger.ledger import Ledger
from ledger.storage.schema import blob_objects, blobs
from tests.support import prov

TENANT = "acme"


@given(st.binary(max_size=2048), st.binary(min_size=32, max_size=32))
def test_a_salted_blob_is_magic_salt_content(content: bytes, salt: bytes) -> None:
    blob = salted(content, salt)
    assert blob == b"prov-salted-blob.v1\n" + salt + content  # the documented layout
    assert is_salted(blob)
    assert salt_of(blob) == salt
    assert content_of(blob) == content
    assert opens_to(digest_of(blob), blob, content)
    assert not opens_to(digest_of(blob), blob, content + b"x")


@given(st.binary(max_size=HEADER_BYTES + 8))
def test_plain_bytes_read_as_themselves_unless_they_carry_the_magic(data: bytes) -> None:
    if not data.startswith(b"prov-salted-blob.v1\n"):
        assert not is_salted(data)
        assert content_of(data) == data
        assert salt_of(data) is None


def test_a_fresh_salt_hides_a_low_entropy_value_from_every_guess() -> None:
    bands = [f"band-{letter}".encode() for letter in "ABCDEFGHIJKLMNOPQRST"]
    secret = bands[7]
    blob = salted(secret)
    digest = digest_of(blob)
    # Without the salt, hashing every guess (bare or salted with anything guessable) misses.
    guesses = [digest_of(band) for band in bands] + [
        digest_of(salted(band, bytes(32))) for band in bands
    ]
    assert digest not in guesses
    # With the salt (the stored bytes, before erasure) the value is confirmed exactly.
    salt = salt_of(blob)
    assert salt is not None
    assert [band for band in bands if digest_of(salted(band, salt)) == digest] == [secret]


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=300), max_size=6), st.text(max_size=10))
def test_sealing_round_trips_and_binds_tenant_and_digest(chunks: list[bytes], tenant: str) -> None:
    key = secrets.token_bytes(32)
    aad = associated_data(tenant, "sha256:" + "0" * 64)
    sealed = b"".join(seal(key, chunks, aad))
    assert len(sealed) == sum(map(len, chunks)) + 28  # nonce and tag
    assert unseal(key, sealed, aad) == b"".join(chunks)
    with pytest.raises(BlobUnreadable):
        unseal(key, sealed, associated_data(tenant + "x", "sha256:" + "0" * 64))
    with pytest.raises(BlobUnreadable):
        unseal(secrets.token_bytes(32), sealed, aad)
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 1
    with pytest.raises(BlobUnreadable):
        unseal(key, bytes(flipped), aad)


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where subject keys live: the default SQLite file, or a PostgreSQL database of their
    own (`PROV_SUBJECT_KEYS_URL`, for servers on several hosts)."""
    if request.param == "file":
        return tmp_path / "keys.db"
    return str(request.getfixturevalue("postgres_url"))


def test_subject_keys_are_created_once_destroyed_for_good_and_renewed(
    key_store: Path | str,
) -> None:
    kek = secrets.token_bytes(32)
    keys = SubjectKeys(key_store, kek)
    first = keys.ensure(TENANT, "cust-1")
    assert keys.ensure(TENANT, "cust-1") == first
    assert keys.ensure_many(TENANT, ["cust-1", "cust-2"])["cust-1"] == first
    assert keys.key(TENANT, "cust-1", first.key_id) == first.key
    assert keys.destroy(TENANT, "cust-1")
    assert not keys.destroy(TENANT, "cust-1")
    assert keys.key(TENANT, "cust-1", first.key_id) is None
    renewed = keys.ensure(TENANT, "cust-1")
    assert renewed.key_id != first.key_id
    assert renewed.key != first.key
    # The store holds no data key in the clear; nothing is left of a destroyed one.
    with keys.engine.connect() as connection:
        stored = [bytes(row.wrapped) for row in connection.execute(select(data_keys))]
        assert first.key_id not in set(connection.execute(select(data_keys.c.key_id)).scalars())
    assert all(first.key not in wrapped and renewed.key not in wrapped for wrapped in stored)
    if isinstance(key_store, Path):  # the file, byte for byte (secure_delete)
        raw = key_store.read_bytes()
        assert first.key not in raw
        assert renewed.key not in raw
        assert first.key_id.encode() not in raw
    # Another KEK cannot unwrap what this one wrapped.
    with pytest.raises(KeyUnwrapFailed):
        SubjectKeys(key_store, secrets.token_bytes(32)).current(TENANT, "cust-1")
    keys.close()


def test_the_kek_is_created_once_private_and_checked(tmp_path: Path) -> None:
    path = default_kek_path(tmp_path / "prov-ledger.key")
    ensure_kek(path)
    kek = load_kek(path)
    ensure_kek(path)
    assert load_kek(path) == kek
    assert len(kek) == 32
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.fixture
def stored(ledger: Ledger) -> tuple[Ledger, str, bytes]:
    blob = salted(b'{"salary_band": "C"}')
    digest = digest_of(blob)
    assert ledger.blobs.put(TENANT, digest, blob, subject="cust-7", now_us=1).created
    return ledger, digest, blob


def test_the_vault_seals_under_the_subject_key_and_reads_back(
    stored: tuple[Ledger, str, bytes],
) -> None:
    ledger, digest, blob = stored
    assert ledger.blobs.get(TENANT, digest) == blob
    assert ledger.blobs.content(TENANT, digest) == b'{"salary_band": "C"}'
    assert not ledger.blobs.put(TENANT, digest, blob, subject="cust-7", now_us=2).created
    with ledger.engine.connect() as connection:
        row = ledger.blobs.row(connection, TENANT, digest)
        assert row is not None
        assert row.subject == "cust-7"
        assert row.key_id is not None
        sealed = connection.execute(select(blob_objects.c.content)).scalar_one()
    # The database holds ciphertext only: neither the content nor the salt.
    assert b"salary_band" not in bytes(sealed)
    assert (salt_of(blob) or b"") not in bytes(sealed)
    with pytest.raises(NotFound):
        ledger.blobs.get("globex", digest)  # another tenant's
    with pytest.raises(DigestMismatch):
        ledger.blobs.put(TENANT, digest, blob + b"x", subject=None, now_us=3)


def test_an_altered_object_is_named_unreadable_never_served(
    stored: tuple[Ledger, str, bytes],
) -> None:
    ledger, digest, _ = stored
    with ledger.engine.begin() as connection:
        content = bytes(connection.execute(select(blob_objects.c.content)).scalar_one())
        altered = content[:20] + bytes([content[20] ^ 1]) + content[21:]
        connection.execute(update(blob_objects).values(content=altered))
    with pytest.raises(BlobUnreadable, match=digest.removeprefix("sha256:")[:16]) as raised:
        ledger.blobs.get(TENANT, digest)
    assert digest in str(raised.value)


def test_a_destroyed_subject_key_erases_every_copy(stored: tuple[Ledger, str, bytes]) -> None:
    ledger, digest, _ = stored
    with ledger.engine.connect() as connection:
        row = ledger.blobs.row(connection, TENANT, digest)
        sealed = bytes(connection.execute(select(blob_objects.c.content)).scalar_one())
    assert row is not None
    assert row.key_id is not None
    keys_file = ledger.blobs.keys.location
    assert ledger.blobs.destroy_key(TENANT, "cust-7")
    with pytest.raises(BlobErased):
        ledger.blobs.get(TENANT, digest)
    # The copy of the sealed object (a backup, a replica) opens under no key left.
    assert ledger.blobs.keys.key(TENANT, "cust-7", row.key_id) is None
    with sqlite3.connect(keys_file) as db:
        left = db.execute("SELECT count(*) FROM data_keys WHERE subject = 'cust-7'")
        assert left.fetchone() == (0,)
    assert b"salary_band" not in sealed


def test_blobs_from_before_sealing_still_read(ledger: Ledger) -> None:
    legacy = b"stored before migration 0011"
    digest = "sha256:" + hashlib.sha256(legacy).hexdigest()
    with ledger.engine.begin() as connection:
        connection.execute(
            blobs.insert().values(
                tenant=TENANT, digest=digest, size=len(legacy), content=legacy, created_us=1
            )
        )
    assert ledger.blobs.get(TENANT, digest) == legacy
    ledger.blobs.erase_now(TENANT, [digest], now_us=2)
    with pytest.raises(BlobErased):
        ledger.blobs.get(TENANT, digest)
    with ledger.engine.connect() as connection:
        assert connection.execute(select(blobs.c.content)).scalar_one() is None


def test_the_blob_commands_store_salted_read_back_and_refuse_in_one_line(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    stored = prov(
        ["blob", "put", "-", "--tenant", TENANT, "--subject", "cust-9"],
        db=db_url,
        key=key_path,
        stdin=b"salary band C",
    )
    assert stored.code == 0, stored.err
    digest = str(stored.json_lines()[0]["digest"])
    assert digest != digest_of(b"salary band C")  # salted
    content = prov(
        ["blob", "get", digest, "--tenant", TENANT, "--content"], db=db_url, key=key_path
    )
    assert (content.code, content.out) == (0, "salary band C")
    assert is_salted(ledger.blobs.get(TENANT, digest))
    assert ledger.blobs.destroy_key(TENANT, "cust-9")
    gone = prov(["blob", "get", digest, "--tenant", TENANT], db=db_url, key=key_path)
    assert gone.code != 0
    assert gone.out == ""
    assert gone.err.count("\n") == 1
    assert "erased" in gone.err
    assert "key is destroyed" in gone.err
    unknown = prov(
        ["blob", "get", "sha256:" + "0" * 64, "--tenant", TENANT], db=db_url, key=key_path
    )
    assert unknown.code != 0
    assert "no blob" in unknown.err


class _ErasedMidUpload(DatabaseStore):
    """The database store, with an erasure of `subject` retiring its key while an upload
    is between sealing under it and committing its row: the race the vault must survive."""

    def __init__(self, ledger: Ledger, subject: str) -> None:
        super().__init__(ledger.engine)
        self.keys = ledger.blobs.keys
        self.subject: str | None = subject

    def put(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        super().put(name, chunks, size)
        if self.subject is not None:
            self.keys.retire(TENANT, self.subject)
            self.subject = None


def test_an_upload_racing_its_subjects_erasure_is_resealed_not_lost(ledger: Ledger) -> None:
    ledger.blobs.put(TENANT, digest_of(b"earlier"), b"earlier", subject="pat", now_us=1)
    first = ledger.blobs.keys.current(TENANT, "pat")
    assert first is not None
    ledger.blobs.store = _ErasedMidUpload(ledger, "pat")
    blob = salted(b"uploaded while pat's erasure commits")
    digest = digest_of(blob)
    assert ledger.blobs.put(TENANT, digest, blob, subject="pat", now_us=2).created
    # The erasure completes: its retired key is destroyed. The acknowledged blob, which
    # its marks did not take, was sealed again under pat's new key and still reads.
    assert ledger.blobs.keys.destroy_retired(TENANT, "pat")
    assert ledger.blobs.get(TENANT, digest) == blob
    with ledger.engine.connect() as connection:
        row = ledger.blobs.row(connection, TENANT, digest)
        names = set(connection.execute(select(blob_objects.c.name)).scalars())
    assert row is not None
    assert row.key_id not in (None, first.key_id)
    assert object_name(TENANT, digest, first.key_id) not in names  # the old object went
    with pytest.raises(BlobErased):
        ledger.blobs.get(TENANT, digest_of(b"earlier"))  # sealed under the destroyed key


def test_a_missing_kek_is_not_replaced_while_keys_it_wrapped_exist(
    stored: tuple[Ledger, str, bytes], key_path: Path
) -> None:
    ledger, _, _ = stored
    kek = default_kek_path(key_path)
    kek.unlink()  # a volume not mounted, a wrong path: not a first start
    with pytest.raises(LedgerNotInitialized, match="holds data keys it wrapped"):
        Ledger.init(ledger.engine, key_path, ledger.origin)
    assert not kek.exists()
