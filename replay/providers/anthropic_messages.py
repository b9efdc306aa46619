"""The Anthropic Messages API: ``POST {base_url}/v1/messages``.

Differences from the OpenAI format that the translation handles:

- system messages become the top-level ``system`` string (joined by a blank line);
- an assistant turn's tool calls are ``tool_use`` content blocks, and tool answers are
  ``tool_result`` blocks inside a *user* turn; consecutive tool answers go into one user
  turn, since every result for an assistant turn must come back together;
- ``max_tokens`` is required, so the provider's `default_max_tokens` fills it when the
  recorded call had none; ``seed`` does not exist in this API and is not sent;
- the answer's ``stop_reason`` is the finish reason and ``usage`` has ``input_tokens``
  and ``output_tokens``.

Streaming is supported too: named server-sent events (``message_start``,
``content_block_start``/``_delta``/``_stop``, ``message_delta``, ``message_stop``) are
assembled by `MessageStreamAssembler`. An ``overloaded_error`` event after the 200 is a
retryable 529, as Anthropic documents it.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from replay.providers._http import (
    Stopwatch,
    convert_as,
    decode_as,
    decode_json_text,
    encode_json,
    is_success,
    status_error,
    tool_arguments,
    transport_errors,
)
from replay.providers.errors import BadResponse, ServerError
from replay.providers.sse import SseDecoder
from replay.providers.types import ChatRequest, ChatResponse, ToolCall

ANTHROPIC_VERSION = "2023-06-01"


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _Message(msgspec.Struct):
    content: list[_Block]
    id: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    usage: _Usage = msgspec.field(default_factory=_Usage)


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    type: str
    index: int = 0
    message: Any = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: Any = None


def _tool_call(provider: str, block: _Block, raw_input: Any) -> ToolCall:
    if not block.id or not block.name:
        raise BadResponse(provider, "tool_use block without an id or a name")
    return ToolCall(
        call_id=block.id, name=block.name, arguments=tool_arguments(provider, raw_input, block.name)
    )


def parse_message(provider: str, body: bytes) -> ChatResponse:
    message = decode_as(provider, body, _Message, "message")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use":
            calls.append(_tool_call(provider, block, block.input))
        # Other blocks (thinking, server tools) are not part of the decision's answer.
    return ChatResponse(
        text="".join(texts),
        tool_calls=calls,
        finish_reason=message.stop_reason,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        provider=provider,
        model_version=message.model,
        response_id=message.id,
    )


class MessageStreamAssembler:
    """Builds one `ChatResponse` from the events of a streamed Messages answer."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.stopped = False
        self.saw_content = False
        self._blocks: dict[int, _Block] = {}
        self._parts: dict[int, list[str]] = {}
        self._message: _Message | None = None
        self._stop_reason: str | None = None
        self._output_tokens: int | None = None

    def feed(self, data: str) -> None:
        event = decode_as(self.provider, data, _Event, "stream event")
        if event.type == "message_start":
            if not isinstance(event.message, dict):
                raise BadResponse(self.provider, "message_start without a message object")
            start = dict(event.message)
            start.setdefault("content", [])
            self._message = convert_as(self.provider, start, _Message, "message_start")
        elif event.type == "content_block_start":
            if event.content_block is None:
                raise BadResponse(self.provider, "content_block_start without content_block")
            self._blocks[event.index] = event.content_block
            self._parts[event.index] = [event.content_block.text or ""]
        elif event.type == "content_block_delta" and event.delta is not None:
            piece = event.delta.text if event.delta.type == "text_delta" else None
            if event.delta.type == "input_json_delta":
                piece = event.delta.partial_json
            if piece:
                self.saw_content = True
                self._parts.setdefault(event.index, []).append(piece)
        elif event.type == "message_delta":
            if event.delta is not None and event.delta.stop_reason is not None:
                self._stop_reason = event.delta.stop_reason
            if event.usage is not None:
                self._output_tokens = event.usage.output_tokens
        elif event.type == "message_stop":
            self.stopped = True
        elif event.type == "error":
            self._raise(event.error)
        # ping and unknown event types are ignored, as the API asks of clients.

    def _raise(self, error: Any) -> None:
        kind = error.get("type") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        if kind in ("overloaded_error", "api_error"):
            raise ServerError(self.provider, f"{kind} in stream: {message}", 529)
        raise BadResponse(self.provider, f"{kind or 'error'} in stream: {message}")

    def response(self) -> ChatResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            joined = "".join(self._parts.get(index, []))
            if block.type == "text":
                texts.append(joined)
            elif block.type == "tool_use":
                what = f"input of tool call {block.name!r}"
                raw = decode_json_text(self.provider, joined, what) if joined else block.input
                calls.append(_tool_call(self.provider, block, raw))
        start = self._message
        usage = start.usage if start is not None else _Usage()
        return ChatResponse(
            text="".join(texts),
            tool_calls=calls,
            finish_reason=self._stop_reason,
            input_tokens=usage.input_tokens,
            output_tokens=(
                self._output_tokens if self._output_tokens is not None else usage.output_tokens
            ),
            provider=self.provider,
            model_version=start.model if start is not None else None,
            response_id=start.id if start is not None else None,
        )


def build_payload(
    request: ChatRequest, model: str, *, default_max_tokens: int, stream: bool
) -> dict[str, Any]:
    system = [m.content for m in request.messages if m.role == "system"]
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            previous = turns[-1] if turns else None
            if (
                previous is not None
                and previous["role"] == "user"
                and isinstance(previous["content"], list)
                and all(block["type"] == "tool_result" for block in previous["content"])
            ):
                previous["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result]})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": c.call_id, "name": c.name, "input": c.arguments}
                for c in message.tool_calls
            )
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": message.role, "content": message.content})
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": turns,
    }
    if stream:
        payload["stream"] = True
    if system:
        payload["system"] = "\n\n".join(system)
    if request.tools:
        payload["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
        ]
    optional: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "stop_sequences": request.stop_sequences or None,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    return payload


class AnthropicProvider:
    """The Messages API at `base_url` (``https://api.anthropic.com`` for Anthropic's own).
    `send` makes exactly one HTTP request; retries and limits are the caller's."""

    kind = "anthropic"

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        http: httpx.AsyncClient,
        api_key: str | None = None,
        anthropic_version: str = ANTHROPIC_VERSION,
        default_max_tokens: int = 1024,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/v1/messages"
        self._http = http
        self._timeout = timeout or httpx.Timeout(60.0, connect=5.0)
        self._default_max_tokens = default_max_tokens
        self._headers = {"content-type": "application/json", "anthropic-version": anthropic_version}
        if api_key:
            self._headers["x-api-key"] = api_key

    async def send(self, request: ChatRequest, *, model: str, stream: bool = False) -> ChatResponse:
        payload = build_payload(
            request, model, default_max_tokens=self._default_max_tokens, stream=stream
        )
        body = encode_json(payload)
        if stream:
            return await self._stream(body)
        clock = Stopwatch()
        with transport_errors(self.name, self.url):
            answer = await self._http.post(
                self.url, content=body, headers=self._headers, timeout=self._timeout
            )
        if not is_success(answer.status_code):
            raise status_error(self.name, answer, answer.content)
        response = parse_message(self.name, answer.content)
        return msgspec.structs.replace(response, latency_ms=clock.elapsed_ms())

    async def _stream(self, body: bytes) -> ChatResponse:
        clock = Stopwatch()
        headers = self._headers | {"accept": "text/event-stream"}
        assembler = MessageStreamAssembler(self.name)
        decoder = SseDecoder()
        with transport_errors(self.name, self.url):
            async with self._http.stream(
                "POST", self.url, content=body, headers=headers, timeout=self._timeout
            ) as answer:
                if not is_success(answer.status_code):
                    raise status_error(self.name, answer, await answer.aread())
                async for piece in answer.aiter_bytes():
                    for event in decoder.feed(piece):
                        assembler.feed(event.data)
                        if assembler.saw_content:
                            clock.mark_first()
        for event in decoder.close():
            assembler.feed(event.data)
        if not assembler.stopped:
            raise BadResponse(self.name, "stream ended before message_stop")
        return msgspec.structs.replace(
            assembler.response(), latency_ms=clock.elapsed_ms(), first_token_ms=clock.first_ms
        )
