"""Content-addressed blobs: bytes that records reference as `sha256:<hex>`.

A blob belongs to a tenant; another tenant holding the same bytes has its own copy, so
that erasing one subject's data never reaches across tenants. Erasure drops the bytes but
keeps the digest, which is what the signed record and the log commit to.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import IO

from sqlalchemy import Connection, func, insert, select, text, update

from ledger.errors import BadRequest, BlobErased, DigestMismatch, NotFound
from ledger.storage.schema import blobs

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Bytes copied at a time by `put_blob_file`; the most of a blob it holds in memory.
COPY_CHUNK = 1 << 20
_BLOB_LOCK_SPACE = 0x626C6F62  # "blob"
# COPY's text format: these characters are escaped in a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True, slots=True)
class StoredBlob:
    digest: str
    size: int
    created: bool


def check_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise BadRequest(
            f"a blob digest is sha256: and 64 lowercase hex digits, not {digest[:80]!r}",
            pointer="/digest",
        )
    return digest


def put_blob(
    connection: Connection, tenant: str, digest: str, content: bytes, *, now_us: int
) -> StoredBlob:
    """Store `content` under `digest` after checking that it hashes to it; storing the same
    bytes again is a no-op. Bytes once erased are not taken back."""
    actual = "sha256:" + hashlib.sha256(content).hexdigest()
    if actual != check_digest(digest):
        raise DigestMismatch(f"the body hashes to {actual}, not {digest}", pointer="/digest")
    if (stored := _already_stored(connection, tenant, digest, len(content))) is not None:
        return stored
    connection.execute(
        insert(blobs).values(
            tenant=tenant, digest=digest, size=len(content), content=content, created_us=now_us
        )
    )
    return StoredBlob(digest, len(content), created=True)


def _already_stored(
    connection: Connection, tenant: str, digest: str, size: int
) -> StoredBlob | None:
    """The blob as stored before, if it is; bytes once erased are never taken back."""
    row = connection.execute(
        select(blobs.c.erased_us).where(blobs.c.tenant == tenant, blobs.c.digest == digest)
    ).first()
    if row is None:
        return None
    if row.erased_us is not None:
        raise BlobErased(f"blob {digest} was erased and cannot be uploaded again")
    return StoredBlob(digest, size, created=False)


def put_blob_file(
    connection: Connection, tenant: str, digest: str, file: IO[bytes], size: int, *, now_us: int
) -> StoredBlob:
    """Store `size` bytes from `file` under `digest`, copied in chunks so that the blob is
    never whole in memory. The caller has checked that the bytes hash to `digest` (it
    read them once already, as they arrived). Otherwise as `put_blob`."""
    check_digest(digest)
    if connection.dialect.name != "sqlite":
        # Concurrent uploads of one blob take turns, so the later ones find it stored
        # (SQLite has a single writer already). Two-key locks never meet the log's lock.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
            {"space": _BLOB_LOCK_SPACE, "key": f"{tenant}/{digest}"},
        )
    if (stored := _already_stored(connection, tenant, digest, size)) is not None:
        return stored
    file.seek(0)
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection in a transaction has its driver connection"
    if connection.dialect.name == "sqlite":
        # A zero-filled value of the right size, then written in place, chunk by chunk.
        inserted = connection.execute(
            insert(blobs).values(
                tenant=tenant,
                digest=digest,
                size=size,
                content=func.zeroblob(size),
                created_us=now_us,
            )
        )
        with driver.blobopen("blobs", "content", inserted.lastrowid) as blob:
            while chunk := file.read(COPY_CHUNK):
                blob.write(chunk)
        return StoredBlob(digest, size, created=True)
    # PostgreSQL: one row through COPY, its bytea value streamed as hex in chunks.
    columns = "tenant, digest, size, created_us, content"
    with driver.cursor() as cursor, cursor.copy(f"COPY blobs ({columns}) FROM STDIN") as copy:
        copy.write(f"{tenant.translate(_COPY_ESCAPES)}\t{digest}\t{size}\t{now_us}\t\\\\x")
        while chunk := file.read(COPY_CHUNK):
            copy.write(chunk.hex())
        copy.write("\n")
    return StoredBlob(digest, size, created=True)


def get_blob(connection: Connection, tenant: str, digest: str) -> bytes:
    row = connection.execute(
        select(blobs.c.content, blobs.c.erased_us).where(
            blobs.c.tenant == tenant, blobs.c.digest == check_digest(digest)
        )
    ).first()
    if row is None:
        raise NotFound(f"no blob {digest}")
    if row.erased_us is not None or row.content is None:
        raise BlobErased(f"blob {digest} was erased")
    return bytes(row.content)


def erase_blob(connection: Connection, tenant: str, digest: str, *, now_us: int) -> None:
    """Drop the bytes of a blob for good; its digest stays, marked erased."""
    found = connection.execute(
        select(blobs.c.erased_us).where(
            blobs.c.tenant == tenant, blobs.c.digest == check_digest(digest)
        )
    ).first()
    if found is None:
        raise NotFound(f"no blob {digest}")
    if found.erased_us is None:  # erasing again keeps the first erasure time
        connection.execute(
            update(blobs)
            .where(blobs.c.tenant == tenant, blobs.c.digest == digest)
            .values(content=None, erased_us=now_us)
        )
