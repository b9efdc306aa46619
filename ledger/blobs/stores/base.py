"""What an object store offers the blob vault: whole objects by name, written atomically.

Objects are the sealed (encrypted) bytes of a blob, named `<tenant>/<digest hex>`. A store
never sees plaintext, never decides anything about erasure, and is told nothing about
records: the vault keeps the index (the `blobs` table) and decides when an object may be
read. `put` must be atomic (a reader sees the whole object or none, never a prefix) and
idempotent (content addressing: the same name always carries the same bytes); `delete` of
a missing object is not an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from ledger.errors import BlobStoreUnavailable

__all__ = ["BlobStoreUnavailable", "ObjectStore"]


class ObjectStore(Protocol):
    """Whole objects by name. Implementations raise `BlobStoreUnavailable` for an outage,
    never a client library's own exception."""

    #: Where the objects live, for messages and metrics: `database`, `file:///…`, `s3://…`.
    location: str

    def put(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        """Store `size` bytes, given in order as `chunks`, under `name`, atomically."""
        ...

    def put_many(self, objects: Sequence[tuple[str, bytes]]) -> None:
        """Store small whole objects (name, bytes); the database store does it in one
        transaction, the others one put after another (or concurrently)."""
        ...

    def get(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object for good; a missing one is not an error."""
        ...
