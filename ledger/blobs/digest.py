"""The content-addressed form of a blob reference: `sha256:` and 64 lowercase hex digits of
the bytes the blob holds (for a salted blob, of the salt and the content together)."""

from __future__ import annotations

import hashlib
import re

from ledger.errors import BadRequest

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def digest_of(data: bytes) -> str:
    """The reference of `data`: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """`digest` itself when it is well formed; otherwise a 400 naming it."""
    if not _DIGEST.fullmatch(digest):
        raise BadRequest(
            f"a blob digest is sha256: and 64 lowercase hex digits, not {digest[:80]!r}",
            pointer="/digest",
        )
    return digest
