"""Salted blobs: hiding commitments for low-entropy personal content.

A digest of a name, a yes/no or a salary band can be reversed by hashing every guess. A
salted blob holds a fresh random 32-byte salt before its content, so its digest commits to
both and reveals nothing without the salt; the salt is stored with the bytes and erased
with them, after which no guess can be checked against the digest. The format
(docs/log-format.md, "Salted blobs"):

    MAGIC (b"prov-salted-blob.v1\\n", 20 bytes) || salt (32 bytes) || content

The digest a record carries is the plain `sha256:` of those bytes, so storage, upload and
the offline verifiers treat a salted blob as any other; readers that want the content
call `content_of`. Pure and dependency-free: the SDK and the offline verifiers use it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from ledger.blobs.digest import digest_of

MAGIC: Final = b"prov-salted-blob.v1\n"
SALT_BYTES: Final = 32
HEADER_BYTES: Final = len(MAGIC) + SALT_BYTES


def salted(content: bytes, salt: bytes | None = None) -> bytes:
    """The salted blob of `content`, with a fresh salt unless one is given (tests)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"a salt is {SALT_BYTES} bytes, not {len(salt)}")
    return MAGIC + salt + content


def is_salted(blob: bytes) -> bool:
    return len(blob) >= HEADER_BYTES and blob.startswith(MAGIC)


def content_of(blob: bytes) -> bytes:
    """The content a blob carries: without the magic and the salt when it is salted, the
    bytes themselves otherwise."""
    return blob[HEADER_BYTES:] if is_salted(blob) else blob


def salt_of(blob: bytes) -> bytes | None:
    return blob[len(MAGIC) : HEADER_BYTES] if is_salted(blob) else None


def opens_to(digest: str, blob: bytes, content: bytes) -> bool:
    """Whether `blob` hashes to `digest` and carries `content`: what a verifier checks
    when shown a salted blob and the value it claims to hide."""
    return hmac.compare_digest(digest_of(blob), digest) and content_of(blob) == content
