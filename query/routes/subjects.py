"""`GET /v1/subjects/{ref}/decisions`: every decision about a subject, as a bundle that
verifies offline (GDPR Art. 15; `query.subjects.bundle`, checked by `prov verify-subject`).

Scoped to the caller's tenant: a subject only another tenant's decisions name answers 404,
as one that no decision names does. Pages are cursor-paginated, newest first: at most
`limit` decisions, fewer when their blobs would pass `PAGE_BLOB_BYTES`; `next_cursor`
continues, and every page is a complete bundle that verifies on its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import Parameter

from httpapi.problems import problem_spec
from ledger.keys.apikeys import READERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from query.audit.search import MAX_CURSOR
from query.services import read_services
from query.subjects.bundle import DEFAULT_PAGE, MAX_PAGE, PAGE_BLOB_BYTES, subject_bundle


@get(
    "/{ref:str}/decisions",
    opt={"roles": READERS},
    summary="Every decision about a subject, as a bundle that verifies offline",
    tags=["subjects"],
    sync_to_thread=True,
    responses={
        400: problem_spec("The subject reference or the cursor is malformed"),
        404: problem_spec("No decision of this tenant is about the subject"),
        409: problem_spec("A decision's stored bytes no longer verify"),
    },
)
def subject_decisions(
    ref: str,
    caller: ApiKey,
    ledger: Ledger,
    request: Request[Any, Any, State],
    cursor: Annotated[
        str | None, Parameter(max_length=MAX_CURSOR, description="next_cursor of the last page")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> dict[str, Any]:
    """The signed checkpoint and, for each decision about the subject, its signed payload,
    envelope, entry, inclusion proof and signing key, its blobs' bytes (or when they were
    erased) and its plain-language explanation."""
    return subject_bundle(
        ledger,
        caller.tenant,
        ref,
        contest=read_services(request.app.state).contest_contact,
        now_us=now_micros(),
        cursor=cursor,
        limit=limit,
        blob_budget=PAGE_BLOB_BYTES,
    )
