"""OTLP/HTTP export bodies (traces and logs; protobuf or JSON; gzip or not) to `Export`.

The protobuf messages are those of the `opentelemetry-proto` package. JSON follows the
OTLP/JSON encoding: ids are hex strings where protobuf's JSON mapping would use base64, so
they are rewritten before `google.protobuf.json_format` reads the rest (which accepts the
lowerCamelCase and the original field names, enum numbers and 64-bit integers as strings).
One walker then reads the protobuf objects, whatever the encoding.

Everything here is untrusted input: a gzip body is inflated under a limit (a small body
must not expand into gigabytes), an id of the wrong length drops its span with a reason,
and attribute values nest at most `MAX_VALUE_DEPTH` deep.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from ingest.otlp.spans import Export, LoggedEvent, Span, SpanEvent

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_VALUE_DEPTH = 16
_ID_FIELDS = {"traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"}
_json = msgspec.json.Decoder()


class ExportInvalid(ValueError):
    """The body is not an OTLP export the receiver can read (HTTP 400)."""


class ExportTooLarge(ValueError):
    """The body, or what it inflates to, is over the limit (HTTP 413)."""


def media_type(content_type: str | None) -> str:
    """`PROTOBUF` or `JSON` from a Content-Type header; raises `ExportInvalid` otherwise."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise ExportInvalid(
        f"Content-Type must be {PROTOBUF} or {JSON}, not {content_type or 'missing'!r}"
    )


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent, ungzipped when `encoding` says gzip, refused past `limit` bytes."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        data = body
    elif coding == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            raise ExportInvalid(f"the body is not valid gzip: {error}") from error
        if len(data) <= limit and not inflater.eof:
            raise ExportInvalid("the gzip body is truncated")
    else:
        raise ExportInvalid(f"Content-Encoding {encoding!r} is not supported (gzip is)")
    if len(data) > limit:
        raise ExportTooLarge(f"the export is over the limit of {limit} bytes")
    return data


def _hex_ids(value: Any) -> Any:
    # OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64 for bytes fields.
    if isinstance(value, dict):
        fixed = {}
        for key, item in value.items():
            if key in _ID_FIELDS and isinstance(item, str):
                try:
                    fixed[key] = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError as error:
                    raise ExportInvalid(f"{key} {item!r} is not hex") from error
            else:
                fixed[key] = _hex_ids(item)
        return fixed
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def _parse(data: bytes, kind: str, message: Message) -> None:
    try:
        if kind == PROTOBUF:
            message.ParseFromString(data)
            return
        document = _json.decode(data)
        if not isinstance(document, dict):
            raise ExportInvalid(f"the body is not an OTLP export ({kind}): not a JSON object")
        json_format.ParseDict(_hex_ids(document), message, ignore_unknown_fields=True)
    except ExportInvalid:
        raise
    # protobuf's JSON reader raises TypeError or ValueError (not only ParseError) for
    # members of the wrong shape; every one of them is the sender's fault.
    except (
        DecodeError,
        json_format.ParseError,
        msgspec.DecodeError,
        RecursionError,
        TypeError,
        ValueError,
        AttributeError,
    ) as error:
        raise ExportInvalid(f"the body is not an OTLP export ({kind}): {error}") from error


def any_value(value: AnyValue, depth: int = 0) -> Any:
    """An OTLP AnyValue as plain Python (bytes as base64 text)."""
    if depth > MAX_VALUE_DEPTH:
        raise ExportInvalid(f"an attribute value nests deeper than {MAX_VALUE_DEPTH}")
    which = value.WhichOneof("value")
    if which == "array_value":
        return [any_value(item, depth + 1) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values, depth + 1)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which is None:
        return None
    return getattr(value, which)


def attributes(pairs: Iterable[KeyValue], depth: int = 0) -> dict[str, Any]:
    return {pair.key: any_value(pair.value, depth) for pair in pairs}


def _id(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size or not any(raw):
        raise ValueError(f"{what} must be {size} bytes and not all zero")
    return raw.hex()


def _span(span: ProtoSpan, service: str | None, scope: str | None) -> Span:
    parent = span.parent_span_id
    return Span(
        trace_id=_id(span.trace_id, 16, "traceId"),
        span_id=_id(span.span_id, 8, "spanId"),
        parent_span_id=_id(parent, 8, "parentSpanId") if parent else None,
        name=span.name,
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=max(span.end_time_unix_nano, span.start_time_unix_nano),
        status_code=span.status.code,
        status_message=span.status.message,
        attributes=attributes(span.attributes),
        events=tuple(
            SpanEvent(name=e.name, time_ns=e.time_unix_nano, attributes=attributes(e.attributes))
            for e in span.events
        ),
        service=service,
        scope=scope,
    )


def _service_name(resource_attributes: Iterable[KeyValue]) -> str | None:
    for pair in resource_attributes:
        if pair.key == "service.name" and pair.value.WhichOneof("value") == "string_value":
            return pair.value.string_value
    return None


def decode_traces(data: bytes, kind: str) -> Export:
    """The spans of an ExportTraceServiceRequest; a span with bad ids is dropped alone."""
    request = ExportTraceServiceRequest()
    _parse(data, kind, request)
    spans: list[Span] = []
    problems: list[str] = []
    dropped = 0
    for resource_spans in request.resource_spans:
        service = _service_name(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for span in scope_spans.spans:
                try:
                    spans.append(_span(span, service, scope))
                except ValueError as error:
                    dropped += 1
                    # The name is the sender's: cut short, so an answer stays small.
                    problems.append(f"span {span.name[:64]!r}: {error}")
    return Export(spans=spans, dropped=dropped, problems=problems)


def _event_name(record: LogRecord, attrs: dict[str, Any]) -> str:
    name = record.event_name or attrs.pop("event.name", None)
    return name if isinstance(name, str) and name else "log"


def decode_logs(data: bytes, kind: str) -> Export:
    """The log records of an ExportLogsServiceRequest that name a span, as its events.

    A record that names no span cannot belong to a decision; it is counted as dropped.
    """
    request = ExportLogsServiceRequest()
    _parse(data, kind, request)
    events: list[LoggedEvent] = []
    problems: list[str] = []
    dropped = 0
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                try:
                    attrs = attributes(record.attributes)
                    if record.HasField("body"):
                        attrs["body"] = any_value(record.body)
                    event = SpanEvent(
                        name=_event_name(record, attrs),
                        time_ns=record.time_unix_nano or record.observed_time_unix_nano,
                        attributes=attrs,
                    )
                    events.append(
                        LoggedEvent(
                            trace_id=_id(record.trace_id, 16, "traceId"),
                            span_id=_id(record.span_id, 8, "spanId"),
                            event=event,
                        )
                    )
                except ValueError as error:
                    dropped += 1
                    problems.append(f"log record: {error}")
    return Export(events=events, dropped=dropped, problems=problems)
