"""The OTLP decoder, span store and mapping, in process, against brute-force oracles.

- Any bytes: the decoder answers an `Export` or `ExportInvalid`, never anything else.
- Protobuf and OTLP/JSON of the same spans decode to the same spans.
- A trace's decisions do not depend on how its spans were split into exports, in what
  order they came, or how often (retries): the span store and the mapping give the same
  bytes as mapping the spans directly, which is what makes a second assembly a retry.
- The steps are the model calls, each followed by the tool calls it asked for, and the
  unasked tool runs, in time order; counted against the spans.
- `unflatten` rebuilds nested lists and objects from their indexed attribute names.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import create_engine

from ingest.otlp.conventions import unflatten
from ingest.otlp.decode import JSON, PROTOBUF, ExportInvalid, any_value, decode_traces
from ingest.otlp.encode import any_value_of
from ingest.otlp.mapping import decisions_of
from ingest.otlp.spans import Export
from ingest.otlp.store import Claimed, load, save
from ledger.records.decision import LlmCall, ToolCall, encode_decision
from ledger.storage.schema import metadata, otlp_items, otlp_traces
from tests.otlp_support import TraceBuilder, export_body

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _json_body(body: bytes) -> bytes:
    encoded = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    for resource in encoded.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return json.dumps(encoded).encode()


@st.composite
def traces(draw: st.DrawFn) -> TraceBuilder:
    """A root with model calls (some asking for a tool), tool runs and other spans."""
    trace = TraceBuilder(start_ns=1_790_000_000_000_000_000)
    root = trace.root()
    offset = 1
    user = {"role": "user", "parts": [{"type": "text", "content": "go"}]}
    for number in range(draw(st.integers(0, 4))):
        offset += draw(st.integers(0, 5))
        asks = draw(st.booleans())
        answer = (
            {"role": "assistant", "parts": [{"type": "tool_call", "id": f"c{number}", "name": "t"}]}
            if asks
            else {"role": "assistant", "parts": [{"type": "text", "content": f"a{number}"}]}
        )
        trace.chat(root, offset, messages=[user], answer=answer)
        if asks and draw(st.booleans()):
            offset += 1
            trace.tool(root, offset, f"c{number}")
    for _ in range(draw(st.integers(0, 2))):
        offset += draw(st.integers(0, 3))
        trace.tool(root, offset, f"unasked-{offset}")
    if draw(st.booleans()):
        trace.span("db.query", {"db.system": "postgresql"}, parent=root, offset_ms=offset)
    return trace


def _decoded(trace: TraceBuilder) -> Export:
    return decode_traces(export_body(trace.spans), PROTOBUF)


def _decodes_or_refuses(data: bytes, kind: str) -> None:
    """An `Export`, or `ExportInvalid` with a reason: nothing else may escape."""
    refusal = ""
    try:
        export = decode_traces(data, kind)
    except ExportInvalid as error:
        refusal = str(error)
    else:
        assert isinstance(export, Export)
        return
    assert refusal


@given(st.binary(max_size=300))
@SETTINGS
def test_any_bytes_decode_to_an_export_or_a_clear_refusal(data: bytes) -> None:
    for kind in (PROTOBUF, JSON):
        _decodes_or_refuses(data, kind)


OTLP_WORDS = [
    "resourceSpans",
    "scopeSpans",
    "spans",
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "startTimeUnixNano",
]
json_shapes = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["ab" * 8]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(OTLP_WORDS), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_shapes)
@SETTINGS
def test_any_json_shape_decodes_to_an_export_or_a_clear_refusal(document: Any) -> None:
    _decodes_or_refuses(json.dumps(document).encode(), JSON)


@given(traces())
@SETTINGS
def test_protobuf_and_json_give_the_same_spans(trace: TraceBuilder) -> None:
    body = export_body(trace.spans)
    assert decode_traces(body, PROTOBUF) == decode_traces(_json_body(body), JSON)


@given(traces(), st.randoms(use_true_random=False))
@SETTINGS
def test_split_reordered_repeated_exports_give_the_same_decision_bytes(
    tmp_path_factory: pytest.TempPathFactory, trace: TraceBuilder, shuffle: random.Random
) -> None:
    spans = _decoded(trace).spans
    direct = [encode_decision(d) for d in decisions_of("acme", spans, {})]
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('store') / 'spans.db'}")
    metadata.create_all(engine, tables=[otlp_items, otlp_traces])
    arrivals = spans + shuffle.sample(spans, k=len(spans) // 2)  # some sent twice
    shuffle.shuffle(arrivals)
    cuts = sorted(shuffle.sample(range(len(arrivals) + 1), k=min(3, len(arrivals) + 1)))
    for start, end in zip([0, *cuts], [*cuts, len(arrivals)], strict=True):
        if start < end:
            save(engine, "acme", Export(spans=arrivals[start:end]), now_us=1)
    stored = load(engine, [Claimed("acme", trace.trace_hex, closing=False)])[
        ("acme", trace.trace_hex)
    ]
    assert len(stored.spans) == len(spans)
    again = [encode_decision(d) for d in decisions_of("acme", stored.spans, stored.events)]
    assert again == direct
    engine.dispose()


@given(traces())
@SETTINGS
def test_steps_are_the_calls_their_tools_and_the_unasked_runs_in_time_order(
    trace: TraceBuilder,
) -> None:
    spans = _decoded(trace).spans
    [decision] = decisions_of("acme", spans, {})
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    asked = [s for s in chats if "tool_call" in str(s.attributes.get("gen_ai.output.messages", ""))]
    unasked = [
        s
        for s in spans
        if s.attributes.get("gen_ai.operation.name") == "execute_tool"
        and str(s.attributes["gen_ai.tool.call.id"]).startswith("unasked")
    ]
    calls = [step for step in decision.steps if isinstance(step, LlmCall)]
    tools = [step for step in decision.steps if isinstance(step, ToolCall)]
    assert len(calls) == len(chats)
    assert len(tools) == len(asked) + len(unasked)
    # Each call that asked for a tool is followed directly by that tool call.
    for index, step in enumerate(decision.steps):
        if isinstance(step, LlmCall) and "tool_calls" in step.outputs:
            follower = decision.steps[index + 1]
            assert isinstance(follower, ToolCall)
            assert follower.call_id == step.outputs["tool_calls"][0]["call_id"]
    starts = [step.started_at for step in calls]
    assert starts == sorted(starts)
    others = [s for s in spans if s.name == "db.query"]
    assert len(decision.attributes["otlp"].get("spans", [])) == len(others)


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        flat: dict[str, Any] = {}
        for index, item in enumerate(value):
            flat |= _flatten(f"{prefix}.{index}", item)
        return flat
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat |= _flatten(f"{prefix}.{key}", item)
        return flat
    return {prefix: value}


leaves = st.one_of(st.text(max_size=5), st.integers(), st.booleans())
names = st.text("abcxyz_", min_size=1, max_size=4)
nested = st.recursive(
    st.dictionaries(names, leaves, min_size=1, max_size=3),
    lambda inner: st.dictionaries(
        names, st.one_of(inner, st.lists(inner, min_size=1, max_size=3)), min_size=1, max_size=3
    ),
    max_leaves=12,
)


@given(st.lists(nested, min_size=1, max_size=4))
@SETTINGS
def test_unflatten_rebuilds_what_indexed_names_flattened(messages: list[Any]) -> None:
    flat = _flatten("llm.input_messages", messages) | {"llm.other": 1}
    assert unflatten(flat, "llm.input_messages") == messages


def test_a_trace_without_a_root_is_closed_from_its_earliest_orphan(tmp_path: Path) -> None:
    trace = TraceBuilder()
    _, children = trace.loan_trace()
    spans = decode_traces(export_body(children), PROTOBUF).spans
    assert decisions_of("acme", spans, {}) == []  # not yet: the root may still come
    [closed] = decisions_of("acme", spans, {}, closing=True)
    assert closed.id == trace.decision_id(children[0])
    assert closed.attributes["otlp"]["incomplete"] is True
    assert len(closed.steps) == 3


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=15,
)


@given(json_values)
@SETTINGS
def test_attribute_values_survive_encoding_and_decoding(value: Any) -> None:
    assert any_value(any_value_of(value)) == value
