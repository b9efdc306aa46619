"""OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/logs` (docs/otlp.md).

Bodies are protobuf (`application/x-protobuf`) or OTLP/JSON (`application/json`), plain or
gzip. What an export carries is decoded (`ingest.otlp.decode`) and stored in the span store
(`ingest.otlp.store.save`) before the answer, in one transaction: a 200 means every span
it does not report as rejected is durable. Decisions are assembled later, when their trace
is ready (`ingest.otlp.assembler`).

Answers are OTLP's own: `ExportTraceServiceResponse` / `ExportLogsServiceResponse`, in the
request's encoding, with `partial_success` counting what was not kept and why (spans with
bad ids, log records that name no span, items of a trace already assembled). A body that is
not an OTLP export is 400 and one over the limit 413, each with a `google.rpc.Status` body
(protobuf or JSON), which exporters treat as not retryable. The caller's API key names the
tenant; it needs a writer's role, as appends do.

`receive_traces_into` and `receive_logs_into` are the same receive logic with the span
store, the tenant and the way the body is read given by the caller, so that `prov
collector` (`service.collector`) answers exports exactly as the server does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import msgspec
from google.protobuf import json_format
from google.protobuf.message import Message
from litestar import Request, Response, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from sqlalchemy import Engine

from httpapi.errors import UnsupportedMediaType
from httpapi.problems import PROBLEM_MEDIA_TYPE, problem_for
from ingest.otlp import metrics, store
from ingest.otlp.decode import (
    JSON,
    ExportInvalid,
    ExportTooLarge,
    decode_logs,
    decode_traces,
    inflate,
    media_type,
)
from ingest.otlp.spans import Export
from ingest.routes.bodies import body_limit_of, held_body
from ingest.routes.request_state import caller_of, write_services
from ledger.keys.apikeys import WRITERS
from ledger.log.sequencer import now_micros

# google.rpc.Code values OTLP answers with.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
# How many reasons a partial success lists; the count covers the rest.
MAX_REASONS = 10

# How a receiver reads a request's body within a byte limit: the bytes, held until the
# block ends (the server's `held_body` also holds them against the worker's memory budget).
BodyReader = Callable[[Request[Any, Any, Any], int], AbstractAsyncContextManager[bytes | bytearray]]
Decode = Callable[[bytes, str], Export]


def _status(code: int, message: str) -> bytes:
    """A `google.rpc.Status` in protobuf (code = field 1, message = field 2)."""
    text = message.encode()
    return _field(1, _varint(code)) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, varint: bytes) -> bytes:
    return bytes([number << 3]) + varint


def failure(status: int, code: int, message: str, kind: str) -> Response[bytes]:
    if kind == JSON:
        body = msgspec.json.encode({"code": code, "message": message})
    else:
        body = _status(code, message)
    return Response(body, status_code=status, media_type=kind)


def _answer(message: Message, kind: str) -> Response[bytes]:
    if kind == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return Response(body, status_code=200, media_type=kind)


def _reasons(export: Export, late: int, unit: str) -> tuple[int, str]:
    rejected = export.dropped + late
    reasons = export.problems[:MAX_REASONS]
    if late:
        reasons.append(
            f"{late} {unit} arrived after their trace was assembled into decisions and were "
            "not recorded"
        )
    return rejected, "; ".join(reasons)


async def _receive(
    request: Request[Any, Any, Any], decode: Decode, engine: Engine, tenant: str, read: BodyReader
) -> tuple[Export, store.Saved] | Response[bytes]:
    try:
        kind = media_type(request.headers.get("content-type"))
    except ExportInvalid as error:
        # No OTLP encoding to answer in: the project's own error document, as elsewhere.
        problem = problem_for(UnsupportedMediaType(str(error)))
        return Response(
            msgspec.json.encode(problem), status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE
        )
    limit = body_limit_of(request)
    try:
        async with read(request, limit) as body:
            data = inflate(bytes(body), request.headers.get("content-encoding"), limit)
            export: Export = await anyio.to_thread.run_sync(decode, data, kind)
    except RequestEntityTooLarge as error:
        return failure(413, RESOURCE_EXHAUSTED, str(error.detail), kind)
    except ExportTooLarge as error:
        return failure(413, RESOURCE_EXHAUSTED, str(error), kind)
    except ExportInvalid as error:
        return failure(400, INVALID_ARGUMENT, str(error), kind)
    saved = await anyio.to_thread.run_sync(store.save, engine, tenant, export, now_micros())
    return export, saved


@asynccontextmanager
async def whole_body(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytes]:
    """The body, read whole; past `limit`, the route's `request_max_body_size`, which
    Litestar enforces while reading, `RequestEntityTooLarge`."""
    try:
        body = await request.body()
    except RequestEntityTooLarge:
        raise RequestEntityTooLarge(f"the body is over the limit of {limit} bytes") from None
    yield body


def _traces_answer(rejected: int, message: str) -> Message:
    answer = ExportTraceServiceResponse()
    if rejected or message:
        answer.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    return answer


def _logs_answer(rejected: int, message: str) -> Message:
    answer = ExportLogsServiceResponse()
    if rejected or message:
        answer.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    return answer


@dataclass(frozen=True, slots=True)
class _Signal:
    """What differs between the trace and log endpoints."""

    name: str  # the metric label
    unit: str  # what the partial-success message counts
    decode: Decode
    answer: Callable[[int, str], Message]


TRACES = _Signal("spans", "spans", decode_traces, _traces_answer)
LOGS = _Signal("logs", "log records", decode_logs, _logs_answer)


async def _receive_into(
    signal: _Signal,
    request: Request[Any, Any, Any],
    engine: Engine,
    tenant: str,
    read: BodyReader,
) -> Response[bytes]:
    received = await _receive(request, signal.decode, engine, tenant, read)
    if isinstance(received, Response):
        return received
    export, saved = received
    _count(signal.name, saved, export.dropped)
    rejected, message = _reasons(export, saved.late, signal.unit)
    return _answer(signal.answer(rejected, message), _kind(request))


async def receive_traces_into(
    request: Request[Any, Any, Any], engine: Engine, tenant: str, read: BodyReader = whole_body
) -> Response[bytes]:
    """Store a trace export's spans for `tenant` in the span store on `engine`, durably,
    and answer it as OTLP does."""
    return await _receive_into(TRACES, request, engine, tenant, read)


async def receive_logs_into(
    request: Request[Any, Any, Any], engine: Engine, tenant: str, read: BodyReader = whole_body
) -> Response[bytes]:
    """Store a log export's records that name a span, as events of that span."""
    return await _receive_into(LOGS, request, engine, tenant, read)


def _engine(request: Request[Any, Any, Any]) -> Engine:
    return write_services(request.app.state).committer.ledger.engine


@post(
    "/",
    opt={"roles": WRITERS},
    summary="Receive an OTLP/HTTP trace export",
    tags=["otlp"],
    status_code=200,
)
async def receive_traces(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Store the export's spans durably; their traces become decisions once ready."""
    return await receive_traces_into(
        request, _engine(request), caller_of(request).tenant, held_body
    )


@post(
    "/",
    opt={"roles": WRITERS},
    summary="Receive an OTLP/HTTP log export (GenAI events that name a span)",
    tags=["otlp"],
    status_code=200,
)
async def receive_logs(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Store the log records that name a span as events of that span."""
    return await receive_logs_into(request, _engine(request), caller_of(request).tenant, held_body)


def _count(signal: str, saved: store.Saved, dropped: int) -> None:
    metrics.ITEMS.labels(signal, "stored").inc(saved.stored)
    metrics.ITEMS.labels(signal, "rejected").inc(saved.late + dropped)


def _kind(request: Request[Any, Any, Any]) -> str:
    return media_type(request.headers.get("content-type"))
