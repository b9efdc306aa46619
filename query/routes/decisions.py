"""Routes that read decisions: search (`GET /v1/decisions`), the why-report
(`GET /v1/decisions/{id}/why`) and freshness (`GET /v1/decisions/{id}/freshness`). Each is
scoped to the caller's tenant: another tenant's decision answers 404, as a missing one does."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import get
from litestar.params import Parameter

from httpapi.problems import problem_spec
from ledger.keys.apikeys import READERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from query.audit.freshness import freshness_answer
from query.audit.search import (
    DEFAULT_LIMIT,
    MAX_CURSOR,
    MAX_LIMIT,
    MAX_OUTPUT,
    MAX_TEXT,
    DecisionFilter,
    OutputMatch,
    SearchPage,
    search,
)
from query.audit.why import why_report

DECISION_READ = {"roles": READERS}
# The same limits as `query.audit.search` applies to every caller (the pages, the CLI): the
# declared ones answer early, and appear in the OpenAPI document.
Text = Annotated[str | None, Parameter(max_length=MAX_TEXT)]


@get(
    "/",
    opt=DECISION_READ,
    summary="Search decisions",
    tags=["decisions"],
    sync_to_thread=True,
    responses={400: problem_spec("A filter or the cursor is malformed")},
)
def search_decisions(
    caller: ApiKey,
    ledger: Ledger,
    service: Text = None,
    decision_type: Text = None,
    model: Text = None,
    model_version: Text = None,
    occurred_from: Annotated[datetime | None, Parameter(query="from")] = None,
    occurred_to: Annotated[datetime | None, Parameter(query="to")] = None,
    subject: Text = None,
    delegator: Text = None,
    root_principal: Annotated[
        str | None,
        Parameter(
            max_length=MAX_TEXT,
            description="The enrolled principal at the root of a verified chain: alice@example.com",
        ),
    ] = None,
    output: Annotated[
        str | None,
        Parameter(
            max_length=MAX_OUTPUT, description="PATH=VALUE in output.decision, e.g. approved=true"
        ),
    ] = None,
    freshness: Annotated[
        str | None,
        Parameter(
            max_length=MAX_TEXT,
            description="stale, fresh or unknown: the decision's freshness now",
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        Parameter(description="With freshness=stale: those that went stale at or after"),
    ] = None,
    attestation: Annotated[
        str | None,
        Parameter(
            max_length=MAX_TEXT,
            description="producer-signed (signed by the service's own key) or ledger-attested "
            "(built by the ledger from OpenTelemetry spans and signed with its record key)",
        ),
    ] = None,
    cursor: Annotated[str | None, Parameter(max_length=MAX_CURSOR)] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> SearchPage:
    """The caller's tenant's decisions, newest first, filtered; `next_cursor` continues."""
    where = DecisionFilter(
        tenant=caller.tenant,
        service=service,
        decision_type=decision_type,
        model=model,
        model_version=model_version,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        subject=subject,
        delegator=delegator,
        root_principal=root_principal,
        output=None if output is None else OutputMatch.parse(output),
        freshness=freshness,
        stale_since=since,
        attestation=attestation,
    )
    with ledger.engine.connect() as connection:
        return search(connection, where, cursor=cursor, limit=limit)


@get(
    "/{record_id:str}/why",
    opt=DECISION_READ,
    summary="Why a decision was made",
    tags=["decisions"],
    sync_to_thread=True,
    responses={404: problem_spec("No such decision for this tenant")},
)
def why(record_id: str, caller: ApiKey, ledger: Ledger) -> dict[str, Any]:
    """The why-report: the signed decision, what follows from it, every verification and
    the evidence for `prov verify-report` to re-check it offline."""
    with ledger.engine.connect() as connection:
        return why_report(
            connection,
            ledger.verifier,
            ledger.origin,
            caller.tenant,
            record_id,
            now_us=now_micros(),
        )


@get(
    "/{record_id:str}/freshness",
    opt=DECISION_READ,
    summary="Whether a decision may still be relied on",
    tags=["decisions"],
    sync_to_thread=True,
    responses={404: problem_spec("No such decision for this tenant")},
)
def freshness(
    record_id: str,
    caller: ApiKey,
    ledger: Ledger,
    evidence: Annotated[
        bool, Parameter(description="Include the entries and proofs that back the answer")
    ] = True,
) -> dict[str, Any]:
    """`fresh`, `stale` (with each reason: an expiry, or the context change that superseded
    a dependency) or `unknown`, signed by the ledger, with the evidence for
    `prov verify-freshness` to check it offline (docs/freshness.md)."""
    with ledger.engine.connect() as connection:
        return freshness_answer(
            connection,
            ledger.signer,
            ledger.origin,
            caller.tenant,
            record_id,
            now_us=now_micros(),
            evidence=evidence,
        )
