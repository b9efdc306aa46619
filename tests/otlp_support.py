"""Helpers for the OTLP tests: hand-built GenAI spans as OTLP protobuf, exports to a live
server, and waiting for the decisions a trace becomes.

Spans are built with the `opentelemetry-proto` messages, exactly as an exporter encodes
them, so a test can split, repeat and reorder exports at will; the end-to-end tests use the
real OpenTelemetry SDK and its exporters instead.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from ingest.otlp.encode import any_value_of

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _as_sent(value: Any) -> Any:
    # Objects travel as JSON text, as instrumentations send messages and arguments.
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    return value


def value_of(value: Any) -> AnyValue:
    return any_value_of(_as_sent(value))


@dataclass
class TraceBuilder:
    """One trace's spans: a root `loan.approve` and GenAI children, in time order."""

    trace_id: bytes = field(default_factory=lambda: os.urandom(16))
    start_ns: int = field(default_factory=time.time_ns)
    spans: list[Span] = field(default_factory=list)

    @property
    def trace_hex(self) -> str:
        return self.trace_id.hex()

    def span(
        self,
        name: str,
        attributes: dict[str, Any],
        *,
        parent: Span | None,
        offset_ms: int,
        took_ms: int = 5,
        error: str | None = None,
    ) -> Span:
        span = Span(
            trace_id=self.trace_id,
            span_id=secrets.token_bytes(8),
            parent_span_id=parent.span_id if parent is not None else b"",
            name=name,
            kind=Span.SPAN_KIND_CLIENT if parent is not None else Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=self.start_ns + offset_ms * 1_000_000,
            end_time_unix_nano=self.start_ns + (offset_ms + took_ms) * 1_000_000,
            attributes=[KeyValue(key=k, value=value_of(v)) for k, v in attributes.items()],
        )
        if error is not None:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        self.spans.append(span)
        return span

    def root(self, **attributes: Any) -> Span:
        return self.span("loan.approve", attributes, parent=None, offset_ms=0, took_ms=100)

    def chat(
        self, parent: Span, offset_ms: int, *, messages: list[Any] | None, answer: Any
    ) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "scorer",
            "gen_ai.response.model": "scorer-v1",
            "gen_ai.request.temperature": 0.0,
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.response.id": f"resp-{offset_ms}",
        }
        if messages is not None:
            attributes["gen_ai.input.messages"] = messages
            attributes["gen_ai.output.messages"] = [answer]
        return self.span("chat scorer", attributes, parent=parent, offset_ms=offset_ms)

    def tool(self, parent: Span, offset_ms: int, call_id: str) -> Span:
        return self.span(
            "execute_tool check_credit",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "check_credit",
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": {"applicant": "A-1"},
                "gen_ai.tool.call.result": {"score": 720},
            },
            parent=parent,
            offset_ms=offset_ms,
        )

    def loan_trace(self, *, messages: bool = True) -> tuple[Span, list[Span]]:
        """A root with chat -> tool -> chat; returns the root and the children."""
        root = self.root(**{"prov.subject": "applicant-1"})
        asked = {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call-1",
                    "name": "check_credit",
                    "arguments": {"applicant": "A-1"},
                }
            ],
            "finish_reason": "tool_calls",
        }
        user = {"role": "user", "parts": [{"type": "text", "content": "Approve A-1 for 500?"}]}
        first = self.chat(root, 10, messages=[user] if messages else None, answer=asked)
        tool = self.tool(root, 20, "call-1")
        answered = {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call-1", "response": {"score": 720}}],
        }
        final = {
            "role": "assistant",
            "parts": [{"type": "text", "content": '{"approve": true, "limit": 500}'}],
            "finish_reason": "stop",
        }
        second = self.chat(
            root, 30, messages=[user, asked, answered] if messages else None, answer=final
        )
        return root, [first, tool, second]

    def decision_id(self, head: Span) -> str:
        return f"otlp-{self.trace_hex}-{head.span_id.hex()}"


def export_body(spans: list[Span], service: str = "loan-service") -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [KeyValue(key="service.name", value=value_of(service))]},
                scope_spans=[ScopeSpans(scope={"name": "tests"}, spans=spans)],
            )
        ]
    )
    return request.SerializeToString()


def send(url: str, key: str, spans: list[Span], **headers: str) -> ExportTraceServiceResponse:
    answer = httpx.post(
        f"{url}/v1/traces",
        content=export_body(spans),
        headers={"Authorization": f"Bearer {key}", **PROTOBUF, **headers},
        timeout=30,
    )
    assert answer.status_code == 200, answer.content
    assert answer.headers["content-type"].startswith("application/x-protobuf")
    return ExportTraceServiceResponse.FromString(answer.content)


def wait_for_why(url: str, key: str, record_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The why-report of `record_id` once the assembler has appended it."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(
            f"{url}/v1/decisions/{record_id}/why",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        if answer.status_code == 200:
            report: dict[str, Any] = answer.json()
            return report
        assert answer.status_code == 404, answer.text
        if time.monotonic() > deadline:
            raise AssertionError(f"decision {record_id} was not assembled in {timeout} s")
        time.sleep(0.1)
