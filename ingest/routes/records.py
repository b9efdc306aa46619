"""Routes that append records: one envelope (`POST /v1/records`) or a batch
(`POST /v1/records/batch`). Both hand exact request bytes to the group committer and answer
only after the commit."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.openapi.datastructures import ResponseSpec

from httpapi.errors import BatchTooLarge, UnsupportedMediaType
from httpapi.problems import Problem, problem_for, problem_spec
from ingest.routes.bodies import body_limit_of, held_body
from ingest.routes.openapi import EnvelopeBatch, OneEnvelope
from ingest.routes.request_state import caller_of, write_services
from ledger.errors import BadRequest, RecordRejected
from ledger.keys.apikeys import WRITERS
from ledger.log.receipt import Receipt

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


class ItemResult(msgspec.Struct, omit_defaults=True):
    """One batch item's outcome: a receipt (201 or 200) or the problem that refused it."""

    position: int
    status: int
    receipt: Receipt | None = None
    problem: Problem | None = None


class BatchResult(msgspec.Struct):
    created: int
    existing: int
    rejected: int
    results: list[ItemResult]


APPEND_ERRORS = {
    401: problem_spec("Missing or unknown API key"),
    403: problem_spec("The key's role may not append, or the record is for another tenant"),
    409: problem_spec("The id is already in the log with different bytes"),
    413: problem_spec("The body or the record is over its size limit"),
    415: problem_spec("Unsupported Content-Type or payloadType"),
    422: problem_spec("The envelope, payload or signature is invalid"),
    429: problem_spec("Too many records are waiting; retry after Retry-After seconds"),
}


def media_type(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def require_json(request: Request[Any, Any, Any]) -> None:
    media = media_type(request)
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"send the envelope as application/json, not {media}")


@post(
    "/",
    opt={"roles": WRITERS},
    operation_class=OneEnvelope,
    summary="Append one record",
    tags=["records"],
    responses={200: ResponseSpec(Receipt, description="Already stored: the same receipt")}
    | APPEND_ERRORS,
    status_code=201,
)
async def append_record(request: Request[Any, Any, Any]) -> Response[Receipt]:
    """Append one DSSE envelope. 201 with the ledger's signed receipt; 200 with the same
    receipt when these exact bytes were stored before."""
    require_json(request)
    committer = write_services(request.app.state).committer
    async with held_body(request, body_limit_of(request)) as body:
        [outcome] = await committer.append([bytes(body)], caller_of(request).tenant)
    if isinstance(outcome, RecordRejected):
        raise outcome
    return Response(outcome, status_code=201 if outcome.status == "created" else 200)


def split_batch(body: bytes | bytearray, media: str, limit: int) -> list[bytes]:
    """The batch's envelopes as the exact bytes sent: each array element, or each line.
    Items are counted before any is copied, so that an over-long batch costs no more
    memory than its body."""
    if media in NDJSON_TYPES:
        raws = _ndjson_lines(body, limit)
    elif not media or media == "application/json":
        try:
            # Raw items are views of the body: counting them copies nothing.
            items = _ARRAY.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise BadRequest(
                f"the body must be a JSON array of DSSE envelopes: {error}", pointer=""
            ) from None
        _check_count(len(items), limit)
        raws = [bytes(item) for item in items]
    else:
        raise UnsupportedMediaType(
            f"send a batch as application/json or application/x-ndjson, not {media}"
        )
    if not raws:
        raise BadRequest("the batch is empty", pointer="")
    return raws


def _ndjson_lines(body: bytes | bytearray, limit: int) -> list[bytes]:
    """The non-blank lines, stopping at the first one over `limit`."""
    lines: list[bytes] = []
    start = 0
    with memoryview(body) as view:  # released before the caller frees the body
        while start < len(body):
            end = body.find(b"\n", start)
            end = len(body) if end < 0 else end
            line = bytes(view[start:end]).strip()  # one copy: the view slices in place
            if line:
                _check_count(len(lines) + 1, limit)
                lines.append(line)
            start = end + 1
    return lines


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise BatchTooLarge(f"the batch has {count} or more records; the limit is {limit}")


@post(
    "/batch",
    opt={"roles": WRITERS},
    operation_class=EnvelopeBatch,
    summary="Append a batch of records",
    tags=["records"],
    responses=APPEND_ERRORS,
    status_code=200,
)
async def append_batch(request: Request[Any, Any, Any]) -> BatchResult:
    """Append up to the configured number of envelopes in one transaction. Each item gets
    its receipt, or the problem that refused it; nothing of a refused item is stored."""
    services = write_services(request.app.state)
    async with held_body(request, body_limit_of(request)) as body:
        raws = split_batch(body, media_type(request), services.batch_limit)
        del body[:]  # the items are copies; the body's memory goes back now
        outcomes = await services.committer.append(raws, caller_of(request).tenant)
    results = []
    created = existing = 0
    for position, outcome in enumerate(outcomes):
        if isinstance(outcome, RecordRejected):
            problem = problem_for(outcome)
            results.append(ItemResult(position, problem.status, problem=problem))
        elif outcome.status == "created":
            created += 1
            results.append(ItemResult(position, 201, receipt=outcome))
        else:
            existing += 1
            results.append(ItemResult(position, 200, receipt=outcome))
    return BatchResult(created, existing, len(results) - created - existing, results)
