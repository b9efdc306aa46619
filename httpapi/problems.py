"""RFC 9457 problem documents for the project's errors: the one place they are mapped.

Every purposeful error derives from `ProvError` and carries a stable `kind`, a title, a
detail and the JSON pointer of the field at fault. This module gives each kind its HTTP
status (`STATUS_BY_KIND`) and its problem document (`problem_for`): the service answers
errors with it, the pages show its status and title, and a batch answer carries one per
refused item. Every kind is listed in docs/problems.md.
"""

from __future__ import annotations

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from ledger.errors import PROBLEM_TYPE_PREFIX, InvalidPayload, ProvError

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = PROBLEM_TYPE_PREFIX


class FieldError(msgspec.Struct):
    pointer: str
    detail: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document; `errors` names each field at fault."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] = msgspec.field(default_factory=list)


STATUS_BY_KIND: dict[str, int] = {
    "bad-request": 400,
    "bad-proof-request": 400,
    "record-rejected": 422,
    "bad-note": 422,
    "audit-failed": 409,
    "witness-policy-unmet": 409,
    # The witness's refusals (`prov witness serve`), with C2SP tlog-witness's statuses.
    "witness-unknown-log": 404,
    "witness-untrusted": 403,
    "witness-bad-request": 400,
    "witness-size-conflict": 409,
    "witness-inconsistent": 422,
    "entry-altered": 409,
    "missing-tree-node": 500,
    "ledger-error": 500,
    "malformed-envelope": 422,
    "invalid-payload": 422,
    "unsupported-payload-type": 415,
    "unsupported-media-type": 415,
    "record-too-large": 413,
    "body-too-large": 413,
    "bad-signature": 422,
    "unknown-key": 422,
    "key-revoked": 422,
    "key-not-valid": 422,
    "key-not-authorized": 422,
    "delegation-invalid": 422,
    "replay-of-unknown": 422,
    "unknown-policy-engine": 422,
    "policy-unparsable": 422,
    "policy-digest-mismatch": 422,
    "policy-document-unavailable": 422,
    "policy-version-conflict": 409,
    "policy-check-of-unknown": 422,
    "monitor-invalid": 422,
    "monitor-version-conflict": 409,
    "ledger-made-record": 422,
    "monitor-breached": 409,
    "policy-inputs-invalid": 422,
    "policy-evaluation-failed": 422,
    "record-unprocessable": 422,
    "record-unstorable": 422,
    "key-registry": 422,
    "key-conflict": 409,
    "batch-too-large": 413,
    "id-conflict": 409,
    "digest-mismatch": 422,
    "unauthenticated": 401,
    "forbidden": 403,
    "tenant-mismatch": 403,
    "not-found": 404,
    "method-not-allowed": 405,
    "blob-erased": 410,
    "subject-unknown": 404,
    "erasure-refused": 409,
    "erasure-request-invalid": 422,
    "overloaded": 429,
    "not-initialized": 503,
    "shutting-down": 503,
    "database-unavailable": 503,
    "blob-store-unavailable": 503,
    "publication-failed": 503,
    "blob-unreadable": 500,
    "key-unwrap-failed": 500,
    "request-timeout": 408,
    "headers-too-large": 431,
    "body-memory-busy": 503,
    "too-many-connections": 503,
    "not-ready": 503,
    "access-denied": 403,
    "sign-in-required": 401,
    # Model providers, seen from the service: an upstream's failure is a gateway's.
    "provider-error": 502,
    "provider-timeout": 504,
    "provider-unreachable": 502,
    "provider-rate-limited": 503,
    "provider-server-error": 502,
    "provider-rejected": 502,
    "provider-bad-response": 502,
    "provider-circuit-open": 503,
    "provider-missing-api-key": 503,
    "entry-point-error": 502,
    "unknown-model": 422,
    "bad-registry": 503,
    "bad-replay-plan": 400,
    "not-replayable": 422,
    "bad-collector-config": 400,
    "bad-configuration": 500,
    "ledger-not-accepting": 502,
    "cannot-listen": 500,
    "spool-unavailable": 503,
    "blob-unavailable": 422,
    "bad-token": 422,
    "bad-policy": 422,
    "bad-selector": 422,
    "export-invalid": 422,
    "export-error": 422,
    "bad-manifest": 422,
    "report-invalid": 422,
    "cose-receipt-invalid": 422,
    "demo-model-not-found": 404,
    "not-dead-letter": 409,
    # The SDK's own findings, raised in the client, never answered by the server; the
    # status is what a service relaying one would answer.
    "client-error": 500,
    "receipt-invalid": 502,
    "answer-invalid": 502,
    "unexpected-response": 502,
    "connection-failed": 502,
    "invalid-decision": 422,
    "queue-full": 503,
    "client-closed": 500,
    "webhook-invalid": 400,
}


def problem_for(error: ProvError) -> Problem:
    """The problem document for any purposeful error (also used per item in batch answers)."""
    pointer = error.pointer
    # A payload's pointers are relative to the decoded payload; over HTTP they are
    # relative to the envelope the client sent, whose `payload` member carries it.
    if isinstance(error, InvalidPayload):
        pointer = "/payload" + (pointer or "")
    return Problem(
        type=TYPE_PREFIX + error.kind,
        title=error.title,
        status=STATUS_BY_KIND.get(error.kind, 500),
        detail=error.detail,
        errors=[] if pointer is None else [FieldError(pointer, error.detail)],
    )


def problem_spec(description: str) -> ResponseSpec:
    """An OpenAPI response that is a problem document."""
    return ResponseSpec(Problem, description=description, media_type=PROBLEM_MEDIA_TYPE)
