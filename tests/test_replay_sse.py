"""Server-sent events and streamed answers, cut at every possible place.

A network delivers a stream in chunks of any size, so these properties split encoded
streams at arbitrary byte offsets (inside CRLFs and UTF-8 sequences too) and deltas at
arbitrary character offsets, and check that decoding and assembling give back exactly
what was sent.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.providers import BadResponse, ServerError, ToolCall
from replay.providers.anthropic_messages import MessageStreamAssembler
from replay.providers.openai_compat import ChatStreamAssembler
from replay.providers.sse import SseDecoder, SseEvent

LINE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=20,
)
EVENT_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
EOL = st.sampled_from(["\n", "\r\n", "\r"])
JSON_SCALAR = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
ARGUMENTS = st.dictionaries(
    st.text(max_size=8), JSON_SCALAR | st.lists(JSON_SCALAR, max_size=3), max_size=4
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.none() | EVENT_NAME, st.lists(LINE_TEXT, min_size=1, max_size=3)),
        max_size=6,
    ),
    data=st.data(),
)
def test_sse_decoding_survives_any_chunking(
    events: list[tuple[str | None, list[str]]], data: st.DataObject
) -> None:
    lines: list[str] = []
    for name, data_lines in events:
        if data.draw(st.booleans()):
            lines.append(": keep-alive")
        if name is not None:
            lines.append(f"event: {name}")
        lines += [f"data: {line}" for line in data_lines]
        lines.append("")
    # Line endings may mix, but a blank line right after a lone CR cannot end in LF: the
    # two would read as one CRLF, on the wire as here.
    text, previous = "", ""
    for line in lines:
        previous = data.draw(
            st.sampled_from(["\r", "\r\n"]) if previous == "\r" and not line else EOL
        )
        text += line + previous
    encoded = text.encode()
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=12))

    decoder = SseDecoder()
    decoded: list[SseEvent] = []
    for chunk in split_at(encoded, cuts):
        decoded += decoder.feed(chunk)
    decoded += decoder.close()

    assert decoded == [SseEvent(data="\n".join(d), event=n) for n, d in events]


def test_sse_fields_comments_and_a_missing_final_blank_line() -> None:
    decoder = SseDecoder()
    stream = "\ufeffid: 7\nretry: 10\n: comment\ndata:no-space\ndata\n\nevent: x\ndata: last"
    events = decoder.feed(stream.encode())
    assert events == [SseEvent(data="no-space\n", id="7")]
    # The stream closed without the blank line: the last event is not lost.
    assert decoder.close() == [SseEvent(data="last", event="x", id="7")]


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({"id": "c1", "model": "m-1", "system_fingerprint": "fp", "choices": [choice]})


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(max_size=40),
    calls=st.lists(st.tuples(st.text(min_size=1, max_size=8), ARGUMENTS), max_size=3),
    data=st.data(),
)
def test_openai_stream_assembles_text_and_interleaved_tool_calls(
    text: str, calls: list[tuple[str, dict[str, Any]]], data: st.DataObject
) -> None:
    chunks = [openai_chunk({"role": "assistant", "content": ""})]
    chunks += [
        openai_chunk({"content": p})
        for p in pieces(text, data.draw(st.lists(st.integers(0), max_size=6)))
    ]
    # Each call opens with its id and name; argument pieces of all calls then interleave.
    deltas: list[tuple[int, str]] = []
    for index, (name, arguments) in enumerate(calls):
        opening = {"index": index, "id": f"call_{index}", "function": {"name": name}}
        chunks.append(openai_chunk({"tool_calls": [opening]}))
        cut = data.draw(st.lists(st.integers(0), max_size=6))
        deltas += [(index, p) for p in pieces(json.dumps(arguments), cut)]
    order = data.draw(st.permutations(range(len(deltas))))
    # Calls interleave, but each call's own pieces keep their order.
    queues: dict[int, list[str]] = {}
    for index, piece in deltas:
        queues.setdefault(index, []).append(piece)
    for position in order:
        index = deltas[position][0]
        piece = queues[index].pop(0)
        delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
        chunks.append(openai_chunk(delta))
    chunks.append(openai_chunk({}, "tool_calls" if calls else "stop"))
    usage = {"prompt_tokens": 11, "completion_tokens": 5}
    chunks.append(json.dumps({"choices": [], "usage": usage}))

    assembler = ChatStreamAssembler("p")
    for chunk in [*chunks, "[DONE]"]:
        assembler.feed(chunk)
    response = assembler.response()

    assert assembler.done
    assert response.text == text
    assert response.tool_calls == [
        ToolCall(call_id=f"call_{i}", name=name, arguments=arguments)
        for i, (name, arguments) in enumerate(calls)
    ]
    assert response.finish_reason == ("tool_calls" if calls else "stop")
    assert (response.input_tokens, response.output_tokens) == (11, 5)
    assert (response.model_version, response.fingerprint) == ("m-1", "fp")


def test_openai_stream_without_indices_keeps_calls_apart() -> None:
    # Some servers send each tool call whole, with no index.
    assembler = ChatStreamAssembler("p")
    for call_id, name in (("a", "first"), ("b", "second")):
        function = {"name": name, "arguments": json.dumps({"id": call_id})}
        assembler.feed(openai_chunk({"tool_calls": [{"id": call_id, "function": function}]}))
    assembler.feed(openai_chunk({}, "tool_calls"))
    assert [(c.call_id, c.name, c.arguments) for c in assembler.response().tool_calls] == [
        ("a", "first", {"id": "a"}),
        ("b", "second", {"id": "b"}),
    ]


def test_openai_stream_errors() -> None:
    assembler = ChatStreamAssembler("p")
    with pytest.raises(ServerError, match="error in stream"):
        assembler.feed(json.dumps({"error": {"message": "engine died"}}))
    with pytest.raises(BadResponse, match=r"does not match the wire format.*\$\.choices"):
        ChatStreamAssembler("p").feed(json.dumps({"choices": "nope"}))
    broken = ChatStreamAssembler("p")
    opening = {"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": '}}
    broken.feed(openai_chunk({"tool_calls": [opening]}))
    with pytest.raises(BadResponse, match="arguments of tool call 'f': not valid JSON"):
        broken.response()
    not_object = ChatStreamAssembler("p")
    opening = {"index": 0, "id": "c", "function": {"name": "f", "arguments": "[1]"}}
    not_object.feed(openai_chunk({"tool_calls": [opening]}))
    with pytest.raises(BadResponse, match="not a JSON object"):
        not_object.response()


@settings(max_examples=100, deadline=None)
@given(
    blocks=st.lists(
        st.one_of(
            st.tuples(st.just("text"), st.text(max_size=30)),
            st.tuples(st.just("tool_use"), ARGUMENTS),
        ),
        max_size=4,
    ),
    data=st.data(),
)
def test_anthropic_stream_assembles_blocks(
    blocks: list[tuple[str, Any]], data: st.DataObject
) -> None:
    start = {"id": "msg_1", "model": "writer-x", "usage": {"input_tokens": 9, "output_tokens": 1}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "ping"},
    ]
    for index, (kind, value) in enumerate(blocks):
        cut = data.draw(st.lists(st.integers(0), max_size=5))
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(value, cut)]
        else:
            opening = {"type": "tool_use", "id": f"toolu_{index}", "name": "t", "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in pieces(json.dumps(value), cut)
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    events += [stop | {"usage": {"output_tokens": 42}}, {"type": "message_stop"}]

    assembler = MessageStreamAssembler("p")
    for event in events:
        assembler.feed(json.dumps(event))
    response = assembler.response()

    assert assembler.stopped
    assert response.text == "".join(v for k, v in blocks if k == "text")
    assert response.tool_calls == [
        ToolCall(call_id=f"toolu_{i}", name="t", arguments=v)
        for i, (k, v) in enumerate(blocks)
        if k == "tool_use"
    ]
    assert (response.input_tokens, response.output_tokens) == (9, 42)
    assert (response.finish_reason, response.model_version) == ("end_turn", "writer-x")


def test_anthropic_stream_error_events() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(ServerError) as caught:
        MessageStreamAssembler("p").feed(json.dumps(overloaded))
    assert caught.value.status == 529
    assert caught.value.retryable
    invalid = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
    with pytest.raises(BadResponse, match="invalid_request_error in stream: no"):
        MessageStreamAssembler("p").feed(json.dumps(invalid))
