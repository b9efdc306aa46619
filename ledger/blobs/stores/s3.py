"""Objects in S3-compatible object storage (AWS S3, SeaweedFS, MinIO, …) through obstore.

An object is the key `<prefix>/<tenant>/<object>` of the bucket `PROV_BLOB_STORE` names.
An S3 PUT is atomic (a reader sees the old object, the new one or none, never a prefix),
and so is a multipart upload, which S3 shows only once it is completed: an object larger
than one part is streamed as parts, a smaller one sent in one PUT. An upload whose source
fails midway is aborted, and nothing of it is visible.

Every failure of the client (refused, unreachable, timed out, denied) is a
`BlobStoreUnavailable`; the client's own exceptions never leave this module. Its time
limits and retries are set here, from `S3Options`, so that an outage answers within a few
seconds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
)

from ledger.blobs.stores.names import split_name
from ledger.blobs.stores.s3_client import failure_reason, first_line, open_s3
from ledger.blobs.stores.s3_options import S3Options
from ledger.errors import BlobStoreUnavailable

if TYPE_CHECKING:
    pass

# Objects up to this size go in one PUT (held in memory once, as the caller's chunks are
# joined); larger ones as parts of this size, so that no more than a few parts are held.
PART_BYTES = 8 << 20
_PARTS_IN_FLIGHT = 2
_PUTS_IN_FLIGHT = 8
_STATUS = re.compile(r"status code: (\d{3})")

_log = logging.getLogger(__name__)


class S3Store:
    def __init__(self, url: str, options: S3Options) -> None:
        self.location, self._client = open_s3(url, options)

    def put(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        split_name(name)
        source = _Source(name, chunks, size)
        if size <= PART_BYTES:
            body = b"".join(source)  # before any request: a failing source sends nothing
            try:
                obstore.put(self._client, name, body, use_multipart=False)
            except (BaseError, OSError) as error:
                self._unavailable(f"write {name}", error)
            return
        try:
            obstore.put(
                self._client,
                name,
                source,
                use_multipart=True,
                chunk_size=PART_BYTES,
                max_concurrency=_PARTS_IN_FLIGHT,
            )
        except (BaseError, OSError) as error:
            if source.failed is not None:  # the caller's error, whatever the client made of it
                raise source.failed from None
            self._unavailable(f"write {name}", error)

    def put_many(self, objects: Sequence[tuple[str, bytes]]) -> None:
        # One request each, a few at a time: S3 has no batch put, and waiting for each
        # round trip in turn would make a batch of small blobs as slow as its count.
        if len(objects) <= 1:
            for name, content in objects:
                self.put(name, [content], len(content))
            return
        with ThreadPoolExecutor(min(len(objects), _PUTS_IN_FLIGHT)) as pool:
            for _ in pool.map(lambda item: self.put(item[0], [item[1]], len(item[1])), objects):
                pass

    def get(self, name: str) -> bytes | None:
        split_name(name)
        try:
            return bytes(obstore.get(self._client, name).bytes())
        except (FileNotFoundError, NotFoundError) as error:
            if "NoSuchBucket" in str(error):
                self._unavailable(f"read {name}", error, reason="has no such bucket")
            return None
        except (BaseError, OSError) as error:
            self._unavailable(f"read {name}", error)

    def delete(self, name: str) -> None:
        split_name(name)
        try:
            obstore.delete(self._client, name)
        except (FileNotFoundError, NotFoundError):
            return
        except (BaseError, OSError) as error:
            self._unavailable(f"delete {name}", error)

    def _unavailable(
        self, action: str, error: BaseException, *, reason: str | None = None
    ) -> NoReturn:
        # The client's message names the endpoint and the request; it goes to the log, and
        # the answer says only what kind of failure it was.
        _log.warning("object store %s: cannot %s: %s", self.location, action, first_line(error))
        raise BlobStoreUnavailable(
            f"object store {self.location} {reason or failure_reason(error)}: cannot {action}; "
            "nothing was acknowledged, so retrying is safe"
        ) from None


class _Source:
    """The caller's chunks, counted; an error of theirs is remembered, so that it is raised
    as it is and never taken for the store's."""

    def __init__(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        self.name = name
        self.chunks = chunks
        self.size = size
        self.failed: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        given = 0
        try:
            for chunk in self.chunks:
                given += len(chunk)
                yield chunk
            if given != self.size:
                raise ValueError(f"{self.name}: {given} bytes given for a {self.size}-byte object")
        except Exception as error:  # not GeneratorExit: the client may stop reading early
            self.failed = error
            raise
