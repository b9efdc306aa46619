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
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store as _ObstoreS3

from ledger.blobs.stores.s3_options import S3Options, parse_s3_url
from ledger.errors import BadConfiguration
from ledger.publication.base import FOLDER, PublicationFailed, sequence_of

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

_STATUS = re.compile(r"status code: (\d{3})")
_log = logging.getLogger(__name__)


class S3Target:
    def __init__(self, url: str, options: S3Options) -> None:
        where = parse_s3_url(url)
        options.check()
        self._location = str(where)
        config: S3Config = {"region": options.region}
        if options.endpoint is not None:
            config["endpoint"] = options.endpoint
        if options.access_key_id is not None:
            config["access_key_id"] = options.access_key_id
        if options.secret_access_key is not None:
            config["secret_access_key"] = options.secret_access_key
        client: ClientConfig = {
            "allow_http": options.allow_http,
            "connect_timeout": timedelta(seconds=options.connect_timeout_s),
            "read_timeout": timedelta(seconds=options.read_timeout_s),
            "timeout": timedelta(seconds=options.request_timeout_s),
        }
        retry: RetryConfig = {
            "max_retries": options.max_retries,
            "retry_timeout": timedelta(seconds=options.retry_timeout_s),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=1),
                "base": 2,
            },
        }
        try:
            self._client = _ObstoreS3(
                where.bucket,
                prefix=where.prefix or None,
                config=config,
                client_options=client,
                retry_config=retry,
            )
        except BaseError as error:
            raise BadConfiguration(f"{url}: {_first_line(error)}") from None

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
        _log.warning("publication %s: cannot %s: %s", self._location, action, _first_line(error))
        raise PublicationFailed(
            f"publication target {self._location} {reason or _reason(error)}: cannot {action}"
        ) from None


def _reason(error: BaseException) -> str:
    if isinstance(error, PermissionDeniedError | UnauthenticatedError):
        return "refused the credentials"
    text = str(error)
    status = _STATUS.search(text)
    if status is not None:
        return f"answered HTTP {status[1]}"
    if "kind: Timeout" in text or "TimedOut" in text or "timed out" in text.lower():
        return "did not answer in time"
    return "could not be reached"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
