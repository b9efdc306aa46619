"""Policy as code over HTTP: `GET /v1/policies` lists the registry, `POST /v1/policy-checks`
re-evaluates decisions under a registered policy version.

The body names one decision (``{"decision_id": …}``) or a batch (``{"where": "<the query
string GET /v1/decisions takes>", "limit": N}``), and optionally ``against`` (another
version of the decision's policy; without it, the pinned version, which must reproduce the
recorded result). One decision answers 201 with the signed check and its receipt; a batch
answers 200 with the report (`replay.policy.report`) as JSON, or as the HTML page when the
request prefers ``text/html``. Checks run in the request: a policy evaluates in well under a
millisecond, so even a batch of `MAX_CHECK_BATCH` answers in seconds.

Refusals are problem documents and store nothing: a decision with no policy or whose
policy names no registered version (404), inputs its policy's schema refuses
(``policy-inputs-invalid``), a malformed body or filter (400).

Roles: audit and admin keys, since re-checking a decision is an auditor's question; the
check records are appended by the ledger's own key. Ingest keys do neither.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from msgspec import Meta

from httpapi.problems import problem_spec
from ingest.routes.request_state import caller_of
from ledger.indexes.policies import list_policies
from ledger.keys.apikeys import READERS, ApiKey
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records.decision import Id, Label
from ledger.records.policy import PolicyCheckRecord
from query.audit.search import MAX_TEXT, check_text
from query.services import read_services
from replay.policy.check import PolicyChecker
from replay.policy.registry import PolicyLoader
from replay.policy.report import PolicyReport
from replay.policy.report_html import render_report
from service.cli.policy import checked_indexes

MAX_CHECK_BATCH = 10_000
# One per worker: a registered version is parsed once, then served from here.
_loader = PolicyLoader()


class PolicyCheckRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    decision_id: Id | None = None
    where: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_CHECK_BATCH)] | None = None
    against: Label | None = None


class PolicyCheckAnswer(msgspec.Struct):
    """One check: the record as the ledger signed it, and where it sits in the log."""

    check: PolicyCheckRecord
    receipt: Receipt


def _run(ledger: Ledger, tenant: str, body: PolicyCheckRequest) -> PolicyCheckAnswer | PolicyReport:
    if body.against is not None:
        check_text("against", body.against, MAX_TEXT)  # a version no store can hold is none
    with ledger.engine.connect() as connection:
        indexes = checked_indexes(
            connection, tenant, decision_id=body.decision_id, where=body.where, limit=body.limit
        )
    checker = PolicyChecker(ledger, _loader)
    if body.decision_id is not None:
        checked = checker.check_one(indexes[0], body.against)
        return PolicyCheckAnswer(checked.record, checked.receipt)
    return checker.check_batch(tenant, indexes, body.against)


@post(
    "/",
    opt={"roles": READERS},
    summary="Re-evaluate decisions under a registered policy version",
    tags=["policies"],
    responses={
        # No generated examples: a check's verdict, outcome and error go together.
        201: ResponseSpec(
            PolicyCheckAnswer,
            description="One decision: the signed check",
            generate_examples=False,
        ),
        200: ResponseSpec(
            PolicyReport,
            description="A batch: the report (or its HTML page)",
            generate_examples=False,
        ),
        400: problem_spec("The body or the filter is malformed"),
        403: problem_spec("Only audit and admin keys check policies"),
        404: problem_spec("No such decision, or its policy names no registered version"),
        422: problem_spec("The recorded inputs do not match the policy's schema"),
    },
)
async def check_policies(
    request: Request[Any, Any, Any], data: PolicyCheckRequest
) -> Response[Any]:
    """Check one decision (`decision_id`) or a batch (`where`), pinned or `against` a
    version, appending each check as a signed record."""
    ledger = read_services(request.app.state).ledger
    answer = await anyio.to_thread.run_sync(_run, ledger, caller_of(request).tenant, data)
    if isinstance(answer, PolicyCheckAnswer):
        return Response(answer, status_code=201)
    if request.accept.best_match([MediaType.JSON, MediaType.HTML]) == MediaType.HTML:
        return Response(render_report(answer), media_type=MediaType.HTML, status_code=200)
    return Response(answer, status_code=200)


@get(
    "/",
    opt={"roles": READERS},
    summary="The registered policy versions",
    tags=["policies"],
    sync_to_thread=True,
)
def list_policy_versions(
    caller: ApiKey,
    ledger: Ledger,
    policy_id: Annotated[str | None, Parameter(max_length=MAX_TEXT)] = None,
) -> list[dict[str, Any]]:
    """The caller's tenant's registered versions, by policy id, oldest first."""
    if policy_id is not None:
        check_text("policy_id", policy_id, MAX_TEXT)
    with ledger.engine.connect() as connection:
        return [entry.to_json() for entry in list_policies(connection, caller.tenant, policy_id)]
