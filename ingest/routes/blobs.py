"""Routes for content-addressed blobs: upload checks the digest, download is tenant-scoped."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Request, Response, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from httpapi.problems import problem_spec
from ingest.client.blobs import SUBJECT_HEADER
from ingest.routes.bodies import body_limit_of, budget_of, spooled_body
from ingest.routes.monitors import applied_by
from ingest.routes.openapi import OctetStream
from ledger.blobs.digest import check_digest
from ledger.blobs.vault import COPY_CHUNK, StoredBlob, check_subject
from ledger.errors import DigestMismatch
from ledger.keys.apikeys import ADMINS, READERS, WRITERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.storage.db import is_sqlite


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
    digest: str,
    request: Request[Any, Any, Any],
    caller: ApiKey,
    ledger: Ledger,
    subject: Annotated[
        str | None,
        Parameter(
            header=SUBJECT_HEADER,
            required=False,
            description="The subject the bytes are about: they are sealed under its data key, "
            "and erasing the subject erases them",
        ),
    ] = None,
) -> Response[BlobStored]:
    """Store bytes under `sha256:<hex>` after checking that they hash to it; the bytes are
    sealed under the data key of the subject named in `Prov-Subject` (the tenant's own key
    without one)."""
    check_digest(digest)
    check_subject(subject)
    # Spooled to a file while hashed, then sealed and written to the object store in
    # chunks: a blob is never whole in memory, and one that does not match its digest is
    # never stored.
    async with spooled_body(request, body_limit_of(request)) as spooled:
        if spooled.digest != digest:
            raise DigestMismatch(
                f"the body hashes to {spooled.digest}, not {digest}", pointer="/digest"
            )

        def store() -> StoredBlob:
            return ledger.blobs.put_file(
                caller.tenant, digest, spooled.file, spooled.size, subject=subject,
                now_us=now_micros(),
            )  # fmt: skip

        # SQLite builds the row in memory (the blob is not its last column), so there the
        # write holds the blob whole, under the budget; the other stores hold a few chunks.
        engine = ledger.engine
        whole = is_sqlite(engine) and ledger.blobs.store.location == "database"
        in_memory = spooled.size if whole else min(spooled.size, 3 * COPY_CHUNK)
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
def download_blob(digest: str, caller: ApiKey, ledger: Ledger) -> bytes:
    """The blob's bytes (a salted blob with its salt), to readers of its tenant."""
    return ledger.blobs.get(caller.tenant, digest)


@delete(
    "/{digest:str}",
    opt={"roles": ADMINS},
    summary="Erase a blob",
    tags=["blobs"],
    sync_to_thread=True,
    status_code=204,
    responses={
        404: problem_spec("No such blob for this tenant"),
        409: problem_spec("A legal hold covers the blob"),
    },
)
def erase(
    digest: str,
    caller: ApiKey,
    ledger: Ledger,
    reason: Annotated[
        str | None, Parameter(max_length=1024, description="Why, as the erasure record states")
    ] = None,
) -> None:
    """Drop a blob's bytes for good: an erasure record (kind `blobs`, signed by the ledger,
    naming the key that asked) is appended and the blob marked erased in one commit, then
    its object is deleted. Its digest stays, so the records that reference it still
    verify; reads then answer 410. Erasing it again answers 204 and records nothing. A
    legal hold refuses it (409); the retention floor does not apply to a blob erased by
    name (docs/erasure.md)."""
    ledger.erasures.erase_blobs(
        caller.tenant,
        [check_digest(digest)],
        reason=reason or f"DELETE /v1/blobs/{digest}",
        requested_by=applied_by(caller),
        now_us=now_micros(),
    )
