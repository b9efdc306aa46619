"""Content-addressed blobs: bytes that records reference as `sha256:<hex>`.

A blob belongs to a tenant; another tenant holding the same bytes has its own copy, so
that erasing one subject's data never reaches across tenants. Erasure drops the bytes but
keeps the digest, which is what the signed record and the log commit to.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from ledger.errors import BadRequest, BlobErased, DigestMismatch, NotFound
from ledger.schema import blobs

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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
    row = connection.execute(
        select(blobs.c.erased_us).where(blobs.c.tenant == tenant, blobs.c.digest == digest)
    ).first()
    if row is not None:
        if row.erased_us is not None:
            raise BlobErased(f"blob {digest} was erased and cannot be uploaded again")
        return StoredBlob(digest, len(content), created=False)
    connection.execute(
        insert(blobs).values(
            tenant=tenant, digest=digest, size=len(content), content=content, created_us=now_us
        )
    )
    return StoredBlob(digest, len(content), created=True)


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
