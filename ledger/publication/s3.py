"""Published checkpoints in S3-compatible object storage: `s3://bucket/prefix/checkpoints/<sequence>`.

A checkpoint is written with a conditional create (`If-None-Match: *`, obstore's put mode
"create"): S3 refuses the write with 412 when the name exists, so a published object is
never replaced through this client, and two publishers racing for one sequence number
settle with one winner. The client's time limits and retries come from `S3Options`, as
for the blob store.

S3 Object Lock is what keeps the operator from deleting or replacing a published version.
It is the bucket's: a bucket created with Object Lock and a default retention rule
(COMPLIANCE mode, for as long as checkpoints must be kept) gives every object written here
that retention, with no header from this client. SeaweedFS supports it (checked with
4.48): the retained version cannot be deleted, by its owner or an admin, until the date
passes; a DELETE without a version id only adds a delete marker, and an unconditional PUT
only adds a newer version, the retained one staying readable. Without Object Lock (the
bucket's default) the conditional create still refuses every overwrite by a publisher, but
whoever holds write credentials can delete or replace an object; `prov audit
--from-published` then names the checkpoint that was deleted or rewritten.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    PreconditionError,
)

from ledger.blobs.stores.s3_client import failure_reason, first_line, open_s3
from ledger.blobs.stores.s3_options import S3Options
from ledger.publication.base import FOLDER, PublicationFailed, sequence_of

if TYPE_CHECKING:
    pass

_STATUS = re.compile(r"status code: (\d{3})")
_log = logging.getLogger(__name__)


class S3Target:
    def __init__(self, url: str, options: S3Options) -> None:
        self._location, self._client = open_s3(url, options)

    @property
    def location(self) -> str:
        return self._location

    def create(self, name: str, data: bytes) -> bool:
        path = f"{FOLDER}/{name}"
        try:
            # One PUT, never multipart: a conditional create is a single request.
            obstore.put(self._client, path, data, mode="create", use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            return False
        except (BaseError, OSError) as error:
            self._failed(f"write {path}", error)
        return True

    def read(self, name: str) -> bytes | None:
        path = f"{FOLDER}/{name}"
        try:
            return bytes(obstore.get(self._client, path).bytes())
        except (FileNotFoundError, NotFoundError) as error:
            if "NoSuchBucket" in str(error):
                self._failed(f"read {path}", error, reason="has no such bucket")
            return None
        except (BaseError, OSError) as error:
            self._failed(f"read {path}", error)

    def names(self) -> list[str]:
        found: list[str] = []
        try:
            for batch in obstore.list(self._client, f"{FOLDER}/"):
                for meta in batch:
                    folder, _, name = meta["path"].rpartition("/")
                    if folder == FOLDER and sequence_of(name) is not None:
                        found.append(name)
        except (FileNotFoundError, NotFoundError) as error:
            if "NoSuchBucket" in str(error):
                self._failed(f"list {FOLDER}", error, reason="has no such bucket")
            return []
        except (BaseError, OSError) as error:
            self._failed(f"list {FOLDER}", error)
        return found

    def _failed(self, action: str, error: BaseException, *, reason: str | None = None) -> NoReturn:
        # The client's message names the endpoint and the request: the log has it, the
        # error says what kind of failure it was.
        _log.warning("publication %s: cannot %s: %s", self._location, action, first_line(error))
        raise PublicationFailed(
            f"publication target {self._location} {reason or failure_reason(error)}: "
            f"cannot {action}"
        ) from None
