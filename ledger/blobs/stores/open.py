"""The object store `PROV_BLOB_STORE` names:

- `database`: the ledger's own database (the embedded default);
- `file:///abs/path` or `/abs/path`: a directory (absolute, so that every worker and
  command finds the same one whatever its working directory);
- `s3://bucket/prefix`: S3-compatible object storage, reached with the `PROV_S3_*` options.

`check_store_url` is what settings validation runs at load, so a URL that cannot work
stops the server before it starts, with the reason in one line.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine

from ledger.blobs.stores.base import ObjectStore
from ledger.blobs.stores.filesystem import FilesystemStore
from ledger.blobs.stores.s3_options import S3Options, parse_s3_url
from ledger.errors import BadConfiguration

DATABASE = "database"


def check_store_url(url: str) -> None:
    """BadConfiguration unless `url` names a store of a known kind."""
    if url == DATABASE:
        return
    if url.startswith("s3://"):
        try:
            parse_s3_url(url)
        except BadConfiguration as error:
            raise BadConfiguration(f"PROV_BLOB_STORE: {error}") from None
        return
    _directory(url)


def open_store(url: str, *, engine: Engine, s3: S3Options | None = None) -> ObjectStore:
    """The store `url` names; `s3` is how to reach S3 (unset: AWS, credentials from the
    usual `AWS_*` variables)."""
    if url == DATABASE:
        from ledger.blobs.stores.database import DatabaseStore  # noqa: PLC0415 - only when used

        return DatabaseStore(engine)
    if url.startswith("s3://"):
        # The client library loads only where S3 is configured.
        from ledger.blobs.stores.s3 import S3Store  # noqa: PLC0415

        return S3Store(url, s3 or S3Options())
    return FilesystemStore(_directory(url))


def _directory(url: str) -> Path:
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise BadConfiguration(f"PROV_BLOB_STORE: not a local file:///path URL: {url!r}")
        path = unquote(parts.path)
    elif "://" in url:
        raise BadConfiguration(
            f"PROV_BLOB_STORE: {url!r} is none of database, file:///path, /path or "
            "s3://bucket/prefix"
        )
    else:
        path = url
    if not path.startswith("/"):
        raise BadConfiguration(f"PROV_BLOB_STORE: a directory must be an absolute path: {url!r}")
    return Path(path)
