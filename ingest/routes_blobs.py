"""Routes for content-addressed blobs: upload checks the digest, download is tenant-scoped."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import msgspec
from litestar import Request, Response, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import Engine

from ingest.openapi import OctetStream
from ingest.problems import problem_spec
from ledger.apikeys import ADMINS, READERS, WRITERS, ApiKey
from ledger.blobs import StoredBlob, erase_blob, get_blob, put_blob
from ledger.db import write_transaction
from ledger.sequencer import now_micros


class BlobStored(msgspec.Struct):
    digest: str
    size: int


@put(
    "/{digest:str}",
    opt={"roles": WRITERS},
    operation_class=OctetStream,
    summary="Upload a blob",
    tags=["blobs"],
    status_code=201,
    responses={
        200: ResponseSpec(BlobStored, description="Already stored"),
        410: problem_spec("The blob was erased"),
        413: problem_spec("Over PROV_MAX_BLOB_BYTES"),
        422: problem_spec("The body does not hash to the digest"),
    },
)
async def upload_blob(
    digest: str, request: Request[Any, Any, Any], caller: ApiKey, engine: Engine
) -> Response[BlobStored]:
    """Store bytes under `sha256:<hex>` after checking that they hash to it."""
    content = await request.body()

    def store() -> StoredBlob:
        with write_transaction(engine) as connection:
            return put_blob(connection, caller.tenant, digest, content, now_us=now_micros())

    stored = await anyio.to_thread.run_sync(store)
    return Response(
        BlobStored(stored.digest, stored.size), status_code=201 if stored.created else 200
    )


@get(
    "/{digest:str}",
    opt={"roles": READERS},
    summary="Download a blob",
    tags=["blobs"],
    sync_to_thread=True,
    media_type="application/octet-stream",
    responses={404: problem_spec("No such blob for this tenant"), 410: problem_spec("Erased")},
)
def download_blob(digest: str, caller: ApiKey, engine: Engine) -> bytes:
    """The blob's bytes, to readers of its tenant."""
    with engine.connect() as connection:
        return get_blob(connection, caller.tenant, digest)


@delete(
    "/{digest:str}",
    opt={"roles": ADMINS},
    summary="Erase a blob",
    tags=["blobs"],
    sync_to_thread=True,
    status_code=204,
    responses={404: problem_spec("No such blob for this tenant")},
)
def erase(digest: str, caller: ApiKey, engine: Engine) -> None:
    """Drop a blob's bytes for good, as a subject's erasure requires. Its digest stays, so
    the records that reference it still verify; reads then answer 410."""
    with write_transaction(engine) as connection:
        erase_blob(connection, caller.tenant, digest, now_us=now_micros())
