"""What reaching S3-compatible object storage takes: the bucket and prefix of an `s3://` URL,
and the endpoint, region, credentials and time limits every S3 client here is given.

The blob store (`ledger.blobs.stores.s3`) and the Parquet export to `s3://` read the same
options, so one set of `PROV_S3_*` settings serves both. Credentials left unset are read
by the client from the usual `AWS_*` variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ledger.errors import BadConfiguration

# S3's rules for a bucket name (path-style requests), which every compatible server shares.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Options:
    # Unset: AWS itself, in `region`.
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    # Plain HTTP to the endpoint: for a server on loopback or in the same pod only.
    allow_http: bool = False
    # An outage must answer within a few seconds, not a client's default minutes: a short
    # connect, a read that stalls this long fails, few retries inside a bounded time. Only
    # a whole request (a large object at a slow link) may take longer.
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 3.0
    request_timeout_s: float = 120.0
    max_retries: int = 2
    retry_timeout_s: float = 3.0

    def check(self) -> None:
        """BadConfiguration unless a client can be made from these options."""
        if self.endpoint is None:
            return
        scheme = urlsplit(self.endpoint).scheme
        if scheme not in ("http", "https") or not urlsplit(self.endpoint).netloc:
            raise BadConfiguration(
                f"PROV_S3_ENDPOINT must be an http:// or https:// URL, not {self.endpoint!r}"
            )
        if scheme == "http" and not self.allow_http:
            raise BadConfiguration(
                "PROV_S3_ENDPOINT is plain http://: set PROV_S3_ALLOW_HTTP=true if that is meant"
            )


@dataclass(frozen=True, slots=True)
class S3Url:
    bucket: str
    # Without leading or trailing slashes; empty for the bucket's root.
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str) -> S3Url:
    """The bucket and prefix of `s3://bucket[/prefix]`; BadConfiguration for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or parts.query or parts.fragment:
        raise BadConfiguration(f"not an s3://bucket/prefix URL: {url!r}")
    if not _BUCKET.fullmatch(parts.netloc):
        raise BadConfiguration(
            f"{url!r}: a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens"
        )
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise BadConfiguration(f"{url!r}: the prefix has an empty, '.' or '..' segment")
    return S3Url(parts.netloc, prefix)
