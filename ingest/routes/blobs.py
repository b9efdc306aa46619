"""Routes for content-addressed blobs: upload checks the digest, download is tenant-scoped."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import msgspec
import sqlalchemy.exc
from litestar import Request, Response, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import Engine

from httpapi.problems import problem_spec
from ingest.routes.bodies import body_limit_of, budget_of, spooled_body
from ingest.routes.openapi import OctetStream
from ledger.errors import DigestMismatch
from ledger.keys.apikeys import ADMINS, READERS, WRITERS, ApiKey
from ledger.log.sequencer import now_micros
from ledger.storage.blobs import (
    COPY_CHUNK,
    StoredBlob,
    check_digest,
    erase_blob,
    get_blob,
    put_blob_file,
)
from ledger.storage.db import is_sqlite, side_write_transaction, write_transaction


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
    check_digest(digest)
    # Spooled to a file while hashed, then copied to the database in chunks: a blob is
    # never whole in memory, and one that does not match its digest never reaches the
    # database.
    async with spooled_body(request, body_limit_of(request)) as spooled:
        if spooled.digest != digest:
            raise DigestMismatch(
                f"the body hashes to {spooled.digest}, not {digest}", pointer="/digest"
            )

        def store() -> StoredBlob:
            try:
                return store_once()
            except sqlalchemy.exc.IntegrityError:
                return store_once()  # the same blob, stored concurrently: now it is found

        def store_once() -> StoredBlob:
            # Never the log's write lock: a large upload must not hold up appends.
            with side_write_transaction(engine) as connection:
                return put_blob_file(
                    connection,
                    caller.tenant,
                    digest,
                    spooled.file,
                    spooled.size,
                    now_us=now_micros(),
                )

        # SQLite builds the row in memory (the blob is not its last column), so there the
        # write holds the blob whole, under the budget; COPY to PostgreSQL holds one chunk.
        in_memory = spooled.size if is_sqlite(engine) else min(spooled.size, 3 * COPY_CHUNK)
        budget = budget_of(request)
        await budget.acquire(in_memory)
        try:
            stored = await anyio.to_thread.run_sync(store)
        finally:
            budget.release(in_memory)
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
