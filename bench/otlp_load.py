"""The OTLP load of `bench/otlp_peers.py`: GenAI traces as OTLP/HTTP protobuf bodies.

Each trace is one agent decision of four spans, as a GenAI instrumentation reports it:

- ``invoke_agent credit-officer`` (the root, carrying ``prov.decision_type``),
- ``chat gpt-4.1-mini``: the conversation sent, an answer asking for a tool,
- ``execute_tool credit_bureau_lookup``: the service's run of that tool,
- ``chat gpt-4.1-mini``: the conversation with the tool's result, and the final answer.

The attributes add up to about 2.2 KB per trace. Ids are random (16-byte trace ids,
8-byte span ids) from a seeded generator, so a run sends the same traces to every server.
Each body is one `ExportTraceServiceRequest` holding a batch of traces, every trace's
children before its root, as a batching span processor exports finished spans.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from ingest.otlp.encode import attributes_of

SERVICE = "credit-officer"
DECISION_TYPE = "credit.limit_review"
MODEL = "gpt-4.1-mini"
RESPONSE_MODEL = "gpt-4.1-mini-2025-04-14"
TOOL = "credit_bureau_lookup"
_SYSTEM = (
    "Review credit limit increases. Look the customer up first. Answer in JSON: approved, "
    "new_limit, reason."
)


@dataclass(frozen=True)
class Trace:
    """What a sender needs to find a trace again in each store."""

    trace_id: str  # 32 hex digits
    root_span_id: str  # 16 hex digits

    @property
    def decision_id(self) -> str:
        """The id the ledger gives the decision the root heads (no ``prov.decision_id``)."""
        return f"otlp-{self.trace_id}-{self.root_span_id}"


@dataclass(frozen=True)
class Batch:
    """One POST /v1/traces body and the traces in it."""

    body: bytes
    traces: tuple[Trace, ...]


def _span(
    trace_id: bytes,
    span_id: bytes,
    parent: bytes | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent or b"",
        name=name,
        kind=kind,  # type: ignore[arg-type]  # the generated enum accepts its int values
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
        attributes=attributes_of(attributes),
    )


def _messages(*messages: dict[str, Any]) -> str:
    return json.dumps(list(messages), separators=(",", ":"))


def trace_spans(rng: random.Random, number: int, start_ns: int) -> tuple[Trace, list[Span]]:
    """One decision's four spans, children first, root last."""
    trace_id = rng.randbytes(16)
    root, first, tool, second = (rng.randbytes(8) for _ in range(4))
    customer = f"cust-{rng.randrange(10**8):08d}"
    limit = rng.randrange(1_000, 20_000, 500)
    income = rng.randrange(20_000, 200_000, 1_000)
    score = rng.randrange(520, 850)
    approved = score >= 660
    call_id = f"call_{rng.randbytes(12).hex()}"
    arguments = {"customer_id": customer}
    result = json.dumps(
        {
            "score": score,
            "delinquencies_12m": 0 if approved else 1,
            "utilisation": round(rng.random() * 0.9, 3),
            "debt_to_income": round(rng.random() * 0.5, 3),
        }
    )
    request = (
        f"Raise the limit of {customer} from {limit} to {limit * 2}? Income {income}. #{number}"
    )
    answer = json.dumps(
        {
            "approved": approved,
            "new_limit": limit * 2 if approved else limit,
            "reason": "score within policy" if approved else "recent delinquency",
        }
    )
    system = [{"type": "text", "content": _SYSTEM}]
    user = {"role": "user", "parts": [{"type": "text", "content": request}]}
    asked = {
        "role": "assistant",
        "parts": [{"type": "tool_call", "id": call_id, "name": TOOL, "arguments": arguments}],
        "finish_reason": "tool_calls",
    }
    answered = {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": call_id, "response": result}],
    }
    final = {
        "role": "assistant",
        "parts": [{"type": "text", "content": answer}],
        "finish_reason": "stop",
    }

    def chat(inputs: str, outputs: str, tokens_in: int, tokens_out: int) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": MODEL,
            "gen_ai.response.model": RESPONSE_MODEL,
            "gen_ai.request.temperature": 0.0,
            "gen_ai.response.id": f"chatcmpl-{rng.randbytes(10).hex()}",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "gen_ai.system_instructions": json.dumps(system, separators=(",", ":")),
            "gen_ai.input.messages": inputs,
            "gen_ai.output.messages": outputs,
        }

    ms = 1_000_000
    spans = [
        _span(
            trace_id,
            first,
            root,
            f"chat {MODEL}",
            3,  # client
            start_ns + 1 * ms,
            start_ns + 400 * ms,
            chat(_messages(user), _messages(asked), 212, 31),
        ),
        _span(
            trace_id,
            tool,
            root,
            f"execute_tool {TOOL}",
            1,  # internal
            start_ns + 401 * ms,
            start_ns + 450 * ms,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": TOOL,
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": json.dumps(arguments),
                "gen_ai.tool.call.result": result,
            },
        ),
        _span(
            trace_id,
            second,
            root,
            f"chat {MODEL}",
            3,
            start_ns + 451 * ms,
            start_ns + 900 * ms,
            chat(_messages(user, asked, answered), _messages(final), 318, 44),
        ),
        _span(
            trace_id,
            root,
            None,
            f"invoke_agent {SERVICE}",
            1,
            start_ns,
            start_ns + 901 * ms,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": SERVICE,
                "prov.decision_type": DECISION_TYPE,
                "prov.subject": customer,
            },
        ),
    ]
    return Trace(trace_id.hex(), root.hex()), spans


def build_batches(traces: int, batch: int, *, seed: int = 1) -> list[Batch]:
    """`traces` traces in bodies of `batch` traces each, the last one possibly smaller."""
    if traces < 1 or batch < 1:
        raise ValueError(f"need at least one trace and one trace per batch: {traces}, {batch}")
    rng = random.Random(seed)
    start = time.time_ns() - traces * 1_000_000_000
    resource = Resource(
        attributes=attributes_of(
            {"service.name": SERVICE, "service.version": "1.4.2", "deployment.environment": "bench"}
        )
    )
    scope = InstrumentationScope(name="opentelemetry.instrumentation.openai_v2", version="2.3b0")
    batches = []
    for first in range(0, traces, batch):
        made = [
            trace_spans(rng, number, start + number * 1_000_000_000)
            for number in range(first, min(first + batch, traces))
        ]
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource=resource,
                    scope_spans=[
                        ScopeSpans(scope=scope, spans=[span for _, spans in made for span in spans])
                    ],
                )
            ]
        )
        batches.append(Batch(request.SerializeToString(), tuple(trace for trace, _ in made)))
    return batches


def attribute_bytes(batches: list[Batch]) -> float:
    """Mean bytes of attribute keys and values per trace (what "2.2 KB" counts)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(batches[0].body)
    total = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                total += sum(
                    len(item.key) + len(item.value.SerializeToString()) for item in span.attributes
                )
    return total / len(batches[0].traces)
