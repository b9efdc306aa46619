"""The blob vault: the one way the server puts, reads and erases blobs.

It ties together the index (the `blobs` table: digest, size, subject, data key, erasure),
the data keys (`ledger.blobs.subject_keys`, outside the database) and the object store
that holds the sealed bytes (`ledger.blobs.stores`).

- **Put**: the bytes are sealed under the subject's data key and written to the store
  first, then the index row is committed; a blob is readable only once its row is, so a
  crash between the two leaves an orphan object that nothing reads, never a half blob.
  Content addressing makes a put idempotent; bytes once erased are never taken back.
- **Read**: the row, then the key, then the object; an erased row or a destroyed key both
  answer `BlobErased`, a missing or altered object `BlobUnreadable`.
- **Erase**: `mark_erased` stamps the rows inside the caller's transaction (the one that
  appends the erasure record, so the fact and its effect commit together); after the
  commit `drop` deletes the objects and `destroy_key` the subject's data key. Both are
  idempotent, so a re-run after a crash completes an erasure that was recorded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import sha256
from typing import IO, Final

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, delete, insert, select, tuple_, update

from ledger.blobs.digest import check_digest, digest_of
from ledger.blobs.salted import content_of
from ledger.blobs.sealing import OVERHEAD, associated_data, seal, seal_bytes, unseal
from ledger.blobs.stores.base import ObjectStore
from ledger.blobs.stores.database import DatabaseStore
from ledger.blobs.subject_keys import NO_SUBJECT, SubjectKeys
from ledger.errors import BadRequest, BlobErased, BlobUnreadable, DigestMismatch, NotFound
from ledger.storage.db import conflict_insert, side_write_transaction
from ledger.storage.schema import blob_objects, blobs

# Bytes read from an upload at a time; the most of a blob one put holds in memory.
COPY_CHUNK: Final = 1 << 20
MAX_SUBJECT_CHARS: Final = 256
# Tenants used as they are in object names; others are hashed (`object_name`). Never
# `t-` and 64 hex digits, so a hashed name meets no tenant's own.
_SAFE_TENANT: Final = re.compile(r"(?!t-[0-9a-f]{64}$)[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Objects deleted at once from a store that answers each in a round trip (S3).
_DELETE_THREADS: Final = 16


@dataclass(frozen=True, slots=True)
class StoredBlob:
    digest: str
    size: int
    created: bool


@dataclass(frozen=True, slots=True)
class BlobRow:
    """A blob as the index knows it."""

    digest: str
    size: int
    subject: str | None
    key_id: str | None
    erased_us: int | None
    erasure_idx: int | None


def object_name(tenant: str, digest: str, key_id: str) -> str:
    """`<tenant>/<digest hex>.<key id>`: the key id in the name keeps two puts of one
    digest under different keys (a race) from overwriting each other's object. A tenant
    whose name is not a safe path segment (a space, a slash, over 64 characters) is named
    by a hash of itself, so every tenant has a directory or prefix of its own."""
    folder = (
        tenant if _SAFE_TENANT.fullmatch(tenant) else "t-" + sha256(tenant.encode()).hexdigest()
    )
    return f"{folder}/{digest.removeprefix('sha256:')}.{key_id}"


def _names(tenant: str, rows: Iterable[BlobRow]) -> list[str]:
    return [object_name(tenant, row.digest, row.key_id) for row in rows if row.key_id is not None]


def _delete_objects(connection: Connection, names: Sequence[str]) -> None:
    for start in range(0, len(names), 500):
        connection.execute(
            delete(blob_objects).where(blob_objects.c.name.in_(names[start : start + 500]))
        )


def check_subject(subject: str | None) -> str | None:
    if subject is not None and not 0 < len(subject) <= MAX_SUBJECT_CHARS:
        raise BadRequest(
            f"a subject reference is 1 to {MAX_SUBJECT_CHARS} characters", pointer="/subject"
        )
    return subject


_COLUMNS = (
    blobs.c.digest,
    blobs.c.size,
    blobs.c.subject,
    blobs.c.key_id,
    blobs.c.erased_us,
    blobs.c.erasure_idx,
)


class BlobVault:
    def __init__(self, engine: Engine, store: ObjectStore, keys: SubjectKeys) -> None:
        self.engine = engine
        self.store = store
        self.keys = keys

    # -- put -------------------------------------------------------------------------------

    def put(
        self, tenant: str, digest: str, content: bytes, *, subject: str | None, now_us: int
    ) -> StoredBlob:
        """Store `content` under `digest` after checking that it hashes to it."""
        actual = digest_of(content)
        if actual != check_digest(digest):
            raise DigestMismatch(f"the body hashes to {actual}, not {digest}", pointer="/digest")
        return self._put(tenant, digest, lambda: [content], len(content), subject, now_us)

    def put_file(
        self,
        tenant: str,
        digest: str,
        file: IO[bytes],
        size: int,
        *,
        subject: str | None,
        now_us: int,
    ) -> StoredBlob:
        """Store `size` bytes from `file`, read in chunks; the caller has checked that they
        hash to `digest` (it read them once already, as they arrived)."""

        def chunks() -> Iterable[bytes]:
            file.seek(0)
            return iter(lambda: file.read(COPY_CHUNK), b"")

        return self._put(tenant, check_digest(digest), chunks, size, subject, now_us)

    def _put(
        self,
        tenant: str,
        digest: str,
        chunks: Callable[[], Iterable[bytes]],
        size: int,
        subject: str | None,
        now_us: int,
    ) -> StoredBlob:
        check_subject(subject)
        if self._known(tenant, digest) is not None:
            return StoredBlob(digest, size, created=False)
        key = self.keys.ensure(tenant, subject or NO_SUBJECT)
        name = object_name(tenant, digest, key.key_id)
        sealed = seal(key.key, chunks(), associated_data(tenant, digest))
        self.store.put(name, sealed, size + OVERHEAD)
        try:
            with side_write_transaction(self.engine) as connection:
                connection.execute(
                    insert(blobs).values(
                        tenant=tenant,
                        digest=digest,
                        size=size,
                        subject=subject,
                        key_id=key.key_id,
                        created_us=now_us,
                    )
                )
        except sqlalchemy.exc.IntegrityError:
            # Stored concurrently (the row that won names its own object), or erased since
            # the check above: either way this object is not the blob's.
            try:
                won = self._known(tenant, digest)
            except BlobErased:
                self.store.delete(name)
                raise
            if won is None or won.key_id != key.key_id:
                self.store.delete(name)
            return StoredBlob(digest, size, created=False)
        self._reseal_if_retired(tenant, digest, subject, key.key_id, chunks, size)
        return StoredBlob(digest, size, created=True)

    def _reseal_if_retired(
        self,
        tenant: str,
        digest: str,
        subject: str | None,
        key_id: str,
        chunks: Callable[[], Iterable[bytes]],
        size: int,
    ) -> None:
        """An erasure of the subject retired the key this upload sealed under while it was
        under way, and will destroy it: unless the erasure took this blob too (its row is
        marked), seal it again under the subject's new key, so that an acknowledged blob
        is never lost with the erased ones. The erasure retires the key before it commits,
        so a blob committed after the erasure's marks always finds its key retired here."""
        owner = subject or NO_SUBJECT
        name = object_name(tenant, digest, key_id)
        while not self.keys.is_live(tenant, owner, key_id):
            fresh = self.keys.ensure(tenant, owner)
            fresh_name = object_name(tenant, digest, fresh.key_id)
            sealed = seal(fresh.key, chunks(), associated_data(tenant, digest))
            self.store.put(fresh_name, sealed, size + OVERHEAD)
            with side_write_transaction(self.engine) as connection:
                moved = connection.execute(
                    update(blobs)
                    .where(
                        blobs.c.tenant == tenant,
                        blobs.c.digest == digest,
                        blobs.c.key_id == key_id,
                        blobs.c.erased_us.is_(None),
                    )
                    .values(key_id=fresh.key_id)
                ).rowcount
            self.store.delete(name)
            if not moved:  # the erasure took it: nothing of it may stay
                self.store.delete(fresh_name)
                return
            key_id, name = fresh.key_id, fresh_name

    def put_many(
        self, tenant: str, items: Sequence[tuple[str, bytes, str | None]], *, now_us: int
    ) -> list[StoredBlob]:
        """Store many small blobs (digest, content, subject) with one transaction for their
        objects (in the database store) and one for their rows; blobs held already are
        left as they are."""
        for digest, content, subject in items:
            if digest_of(content) != check_digest(digest):
                raise DigestMismatch(f"a blob does not hash to {digest}", pointer="/digest")
            check_subject(subject)
        with self.engine.connect() as connection:
            held = self.rows(connection, tenant, [digest for digest, _, _ in items])
        if erased := sorted(digest for digest, row in held.items() if row.erased_us is not None):
            raise BlobErased(f"blob {erased[0]} was erased and cannot be uploaded again")
        new = {
            digest: (content, subject) for digest, content, subject in items if digest not in held
        }
        keys = self.keys.ensure_many(tenant, {subject or NO_SUBJECT for _, subject in new.values()})
        objects, rows = [], []
        sealed_under: dict[str, str] = {}
        for digest, (content, subject) in new.items():
            key = keys[subject or NO_SUBJECT]
            sealed_under[digest] = key.key_id
            sealed = seal_bytes(key.key, content, associated_data(tenant, digest))
            objects.append((object_name(tenant, digest, key.key_id), sealed))
            rows.append(
                {
                    "tenant": tenant,
                    "digest": digest,
                    "size": len(content),
                    "subject": subject,
                    "key_id": key.key_id,
                    "created_us": now_us,
                }
            )
        if objects:
            self.store.put_many(objects)
            with side_write_transaction(self.engine) as connection:
                connection.execute(
                    conflict_insert(connection, blobs).on_conflict_do_nothing(), rows
                )
            for digest, key_id in sealed_under.items():
                content, subject = new[digest]
                self._reseal_if_retired(
                    tenant, digest, subject, key_id, functools.partial(list, [content]),
                    len(content),
                )  # fmt: skip
        return [
            StoredBlob(digest, len(content), created=digest in new) for digest, content, _ in items
        ]

    def _known(self, tenant: str, digest: str) -> BlobRow | None:
        """The blob's row if it is stored; bytes once erased are never taken back."""
        with self.engine.connect() as connection:
            row = self.row(connection, tenant, digest)
        if row is not None and row.erased_us is not None:
            raise BlobErased(f"blob {digest} was erased and cannot be uploaded again")
        return row

    # -- read ------------------------------------------------------------------------------

    @staticmethod
    def row(connection: Connection, tenant: str, digest: str) -> BlobRow | None:
        found = connection.execute(
            select(*_COLUMNS).where(blobs.c.tenant == tenant, blobs.c.digest == digest)
        ).first()
        return None if found is None else BlobRow(*found)

    @staticmethod
    def rows(connection: Connection, tenant: str, digests: Iterable[str]) -> dict[str, BlobRow]:
        """The index rows of those of `digests` the tenant holds (or held)."""
        wanted = sorted(set(digests))
        found: dict[str, BlobRow] = {}
        for start in range(0, len(wanted), 500):
            for row in connection.execute(
                select(*_COLUMNS).where(
                    blobs.c.tenant == tenant, blobs.c.digest.in_(wanted[start : start + 500])
                )
            ):
                found[row.digest] = BlobRow(*row)
        return found

    def get(self, tenant: str, digest: str) -> bytes:
        """The bytes the digest commits to (a salted blob with its salt)."""
        check_digest(digest)
        with self.engine.connect() as connection:
            found = connection.execute(
                select(*_COLUMNS, blobs.c.content).where(
                    blobs.c.tenant == tenant, blobs.c.digest == digest
                )
            ).first()
        if found is None:
            raise NotFound(f"no blob {digest}")
        row = BlobRow(*found[:-1])
        if row.erased_us is not None:
            raise BlobErased(f"blob {digest} was erased")
        if row.key_id is None:  # stored before sealing (migration 0011)
            if found.content is None:
                raise BlobErased(f"blob {digest} was erased")
            return bytes(found.content)
        key = self.keys.key(tenant, row.subject or NO_SUBJECT, row.key_id)
        if key is None:
            raise BlobErased(f"blob {digest} was erased: its subject's data key is destroyed")
        sealed = self.store.get(object_name(tenant, digest, row.key_id))
        if sealed is None:
            raise BlobUnreadable(f"blob {digest} is missing from {self.store.location}")
        try:
            return unseal(key, sealed, associated_data(tenant, digest))
        except BlobUnreadable as error:
            raise BlobUnreadable(f"blob {digest}: {error}") from None

    def find(self, tenant: str, digest: str) -> bytes | None:
        """The bytes, or None when the blob is missing or erased."""
        try:
            return self.get(tenant, digest)
        except (NotFound, BlobErased, BadRequest):
            return None

    def find_many(self, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        """The bytes of those (tenant, digest) pairs that are held, neither missing nor
        erased."""
        found: dict[tuple[str, str], bytes] = {}
        for tenant, digest in sorted(set(wanted)):
            if (data := self.find(tenant, digest)) is not None:
                found[(tenant, digest)] = data
        return found

    def content(self, tenant: str, digest: str) -> bytes:
        """The content a blob carries: without its salt when it is salted."""
        return content_of(self.get(tenant, digest))

    # -- erase -----------------------------------------------------------------------------

    @staticmethod
    def mark_erased(
        connection: Connection,
        tenant: str,
        digests: Sequence[str],
        *,
        now_us: int,
        erasure_idx: int | None,
    ) -> None:
        """Stamp the rows erased, inside the caller's transaction; rows erased before keep
        their first erasure. Readers answer `BlobErased` from the commit on."""
        for start in range(0, len(digests), 500):
            connection.execute(
                update(blobs)
                .where(
                    blobs.c.tenant == tenant,
                    blobs.c.digest.in_(digests[start : start + 500]),
                    blobs.c.erased_us.is_(None),
                )
                .values(content=None, erased_us=now_us, erasure_idx=erasure_idx)
            )

    def erase_now(self, tenant: str, digests: Sequence[str], *, now_us: int) -> list[BlobRow]:
        """Mark `digests` erased in a transaction of their own and drop their objects (an
        erasure with no record of its own); NotFound when one is not held."""
        with side_write_transaction(self.engine) as connection:
            held = self.rows(connection, tenant, digests)
            if missing := sorted(set(digests) - set(held)):
                raise NotFound(f"no blob {missing[0]}")
            self.mark_erased(connection, tenant, digests, now_us=now_us, erasure_idx=None)
        self.drop(tenant, held.values())
        return list(held.values())

    @staticmethod
    def page(
        connection: Connection, after: tuple[str, str], limit: int
    ) -> list[tuple[str, BlobRow]]:
        """(tenant, row) of every tenant's blobs after `after` (tenant, digest), in that
        order, at most `limit`: a walk over the whole index."""
        return [
            (row.tenant, BlobRow(*row[1:]))
            for row in connection.execute(
                select(blobs.c.tenant, *_COLUMNS)
                .where(tuple_(blobs.c.tenant, blobs.c.digest) > tuple_(*after))
                .order_by(blobs.c.tenant, blobs.c.digest)
                .limit(limit)
            )
        ]

    @staticmethod
    def erased_by(connection: Connection, tenant: str, first: int, last: int) -> list[BlobRow]:
        """The rows erasure records `first` to `last` (log indexes) marked erased."""
        return [
            BlobRow(*row)
            for row in connection.execute(
                select(*_COLUMNS)
                .where(blobs.c.tenant == tenant, blobs.c.erasure_idx.between(first, last))
                .order_by(blobs.c.digest)
            )
        ]

    def drop_in(self, connection: Connection, tenant: str, rows: Iterable[BlobRow]) -> None:
        """In the database store, delete the objects of `rows` inside the caller's
        transaction (the one that marks them erased), so that they go with the mark; other
        stores are dropped after the commit (`drop`)."""
        if isinstance(self.store, DatabaseStore):
            _delete_objects(connection, _names(tenant, rows))

    def drop(self, tenant: str, rows: Iterable[BlobRow]) -> int:
        """Delete the sealed objects of erased rows; idempotent. Returns how many."""
        names = _names(tenant, rows)
        if isinstance(self.store, DatabaseStore):
            # One transaction for them all, not one per object.
            with side_write_transaction(self.engine) as connection:
                _delete_objects(connection, names)
        elif len(names) > 1:
            # A remote store answers each delete in a round trip: several at once.
            with ThreadPoolExecutor(_DELETE_THREADS, thread_name_prefix="prov-drop") as pool:
                for _ in pool.map(self.store.delete, names):
                    pass
        else:
            for name in names:
                self.store.delete(name)
        return len(names)

    def destroy_key(self, tenant: str, subject: str) -> bool:
        """Destroy the subject's data key: every copy of its blobs becomes unreadable."""
        return self.keys.destroy(tenant, subject)
