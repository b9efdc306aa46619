"""Spans and span events as the receiver keeps them, whatever the wire encoding.

OTLP arrives as protobuf or JSON (`ingest.otlp.decode`); both become these Structs, which
are also what the span store writes (`ingest.otlp.store`). Ids are lowercase hex, times
are Unix nanoseconds, and attribute values are plain JSON-able Python values (an OTLP
``kvlist`` is a dict, an ``array`` a list, bytes are base64 text).

A log record that names a span (the event-based message capture of older GenAI
instrumentations, sent to ``/v1/logs``) is a `SpanEvent` of that span, exactly as a span
event is.
"""

from __future__ import annotations

from typing import Any

import msgspec

SPAN_KIND_NAMES = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_ERROR = 2


class SpanEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event in a span's life: its name, time and attributes (a log record's body is
    kept as the attribute ``body``)."""

    name: str
    time_ns: int
    attributes: dict[str, Any] = {}


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """One finished span, with the name of the service (its resource) that emitted it."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    name: str
    kind: int = 0
    start_ns: int
    end_ns: int
    status_code: int = 0
    status_message: str = ""
    attributes: dict[str, Any] = {}
    events: tuple[SpanEvent, ...] = ()
    service: str | None = None
    scope: str | None = None


class LoggedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A log record that names a span: an event of that span, arriving on its own."""

    trace_id: str
    span_id: str
    event: SpanEvent


class Export(msgspec.Struct, frozen=True, kw_only=True):
    """What one export request carried; `dropped` counts items that could not be used and
    `problems` says why, for the OTLP partial-success answer."""

    spans: list[Span] = []
    events: list[LoggedEvent] = []
    dropped: int = 0
    problems: list[str] = []
