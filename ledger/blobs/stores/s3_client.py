"""The one way to open an S3 client here (obstore), and to say in a word why a call failed.

The blob store and the checkpoint publication both reach S3 with the same `PROV_S3_*`
options, the same short time limits and the same bounded retries, and report failures the
same way: the log gets the client's message, the error says what kind of failure it was.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from ledger.blobs.stores.s3_options import S3Options, parse_s3_url
from ledger.errors import BadConfiguration

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

_STATUS = re.compile(r"status code: (\d{3})")


def open_s3(url: str, options: S3Options) -> tuple[str, S3Store]:
    """The `s3://bucket/prefix` location as text, and a client for it; BadConfiguration if
    the options or the URL cannot make one."""
    where = parse_s3_url(url)
    options.check()
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
        store = S3Store(
            where.bucket,
            prefix=where.prefix or None,
            config=config,
            client_options=client,
            retry_config=retry,
        )
    except BaseError as error:
        raise BadConfiguration(f"{url}: {first_line(error)}") from None
    return str(where), store


def failure_reason(error: BaseException) -> str:
    """Why an S3 call failed, in a few words."""
    if isinstance(error, PermissionDeniedError | UnauthenticatedError):
        return "refused the credentials"
    text = str(error)
    status = _STATUS.search(text)
    if status is not None:
        return f"answered HTTP {status[1]}"
    # The client's error kinds, as its message spells them.
    if "kind: Timeout" in text or "TimedOut" in text or "timed out" in text.lower():
        return "did not answer in time"
    return "could not be reached"


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
