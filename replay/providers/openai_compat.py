"""OpenAI-compatible chat completions: ``POST {base_url}/chat/completions``.

The one wire format that OpenAI, vLLM, Ollama, the llama.cpp server and LiteLLM all
speak. Non-streaming answers are decoded against wire Structs, so a missing or mistyped
member is a `BadResponse` naming it. Streaming answers are server-sent events whose
``data:`` members are chunks, ended by ``data: [DONE]``; `ChatStreamAssembler` builds
the same `ChatResponse` from them, joining text deltas and the pieces of each tool call's
JSON arguments by the call's ``index``. ``stream_options.include_usage`` asks for the
final usage chunk, without which a streamed call would have no token counts to bill.

Parameters a request leaves as None are not sent. ``top_k`` is not part of OpenAI's own
API but vLLM, llama.cpp and Ollama read it, so it is sent only when the recorded call had
one. ``max_tokens`` (not ``max_completion_tokens``) is sent because every compatible
server reads it.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from replay.providers._http import (
    Stopwatch,
    decode_as,
    encode_json,
    is_success,
    status_error,
    tool_arguments,
    transport_errors,
)
from replay.providers.errors import BadResponse, ServerError
from replay.providers.sse import SseDecoder
from replay.providers.types import ChatMessage, ChatRequest, ChatResponse, ToolCall

DONE = "[DONE]"


class _Function(msgspec.Struct):
    name: str
    arguments: str | dict[str, Any] | None = None  # Ollama has sent objects here


class _ToolCall(msgspec.Struct):
    id: str
    function: _Function


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    id: str | None = None
    model: str | None = None
    system_fingerprint: str | None = None
    usage: _Usage | None = None


class _DeltaFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _DeltaToolCall(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _DeltaFunction | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_DeltaToolCall] | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_ChunkChoice] = []
    id: str | None = None
    model: str | None = None
    system_fingerprint: str | None = None
    usage: _Usage | None = None
    error: Any = None


class _PartialCall:
    __slots__ = ("arguments", "call_id", "name")

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.name = ""
        self.arguments: list[str] = []


class ChatStreamAssembler:
    """Builds one `ChatResponse` from the ``data:`` payloads of a streamed completion.

    Only choice 0 is kept: a replay asks for one answer (``n`` is never sent).
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False
        self.saw_content = False
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._usage: _Usage | None = None
        self._model: str | None = None
        self._fingerprint: str | None = None
        self._id: str | None = None

    def feed(self, data: str) -> None:
        if data.strip() == DONE:
            self.done = True
            return
        chunk = decode_as(self.provider, data, _Chunk, "stream chunk")
        if chunk.error is not None:
            # vLLM and LiteLLM report a failure after the 200 as an error chunk.
            raise ServerError(self.provider, f"error in stream: {chunk.error}", 500)
        self._id = chunk.id or self._id
        self._model = chunk.model or self._model
        self._fingerprint = chunk.system_fingerprint or self._fingerprint
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
            if choice.delta.content:
                self.saw_content = True
                self._text.append(choice.delta.content)
            for delta in choice.delta.tool_calls or ():
                self.saw_content = True
                self._tool_delta(delta)

    def _tool_delta(self, delta: _DeltaToolCall) -> None:
        index = delta.index
        if index is None:
            # Servers that omit the index send each call whole; a new id is a new call.
            last = max(self._calls, default=-1)
            fresh = last < 0 or (delta.id is not None and self._calls[last].call_id is not None)
            index = last + 1 if fresh else last
        call = self._calls.setdefault(index, _PartialCall())
        if delta.id:
            call.call_id = delta.id
        if delta.function is not None:
            if delta.function.name:
                call.name += delta.function.name
            if delta.function.arguments:
                call.arguments.append(delta.function.arguments)

    @property
    def finished(self) -> bool:
        return self.done or self._finish is not None

    def response(self) -> ChatResponse:
        calls: list[ToolCall] = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise BadResponse(self.provider, f"streamed tool call {index} has no name")
            calls.append(
                ToolCall(
                    call_id=partial.call_id or f"call_{index}",
                    name=partial.name,
                    arguments=tool_arguments(
                        self.provider, "".join(partial.arguments), partial.name
                    ),
                )
            )
        usage = self._usage or _Usage()
        return ChatResponse(
            text="".join(self._text),
            tool_calls=calls,
            finish_reason=self._finish,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            provider=self.provider,
            model_version=self._model,
            fingerprint=self._fingerprint,
            response_id=self._id,
        )


def parse_completion(provider: str, body: bytes) -> ChatResponse:
    """A non-streamed ``chat.completion`` answer as a `ChatResponse`."""
    completion = decode_as(provider, body, _Completion, "chat completion")
    if not completion.choices:
        raise BadResponse(provider, "chat completion has no choices")
    choice = completion.choices[0]
    calls = [
        ToolCall(
            call_id=call.id,
            name=call.function.name,
            arguments=tool_arguments(provider, call.function.arguments, call.function.name),
        )
        for call in choice.message.tool_calls or ()
    ]
    usage = completion.usage or _Usage()
    return ChatResponse(
        text=choice.message.content or "",
        tool_calls=calls,
        finish_reason=choice.finish_reason,
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        provider=provider,
        model_version=completion.model,
        fingerprint=completion.system_fingerprint,
        response_id=completion.id,
    )


def wire_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": encode_json(call.arguments).decode(),
                },
            }
            for call in message.tool_calls
        ]
        if not message.content:
            out["content"] = None  # the format's way to say "tool calls only"
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    return out


def build_payload(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [wire_message(m) for m in request.messages],
        "stream": stream,
    }
    if stream:
        payload["stream_options"] = {"include_usage": True}
    if request.tools:
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
    optional: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "seed": request.seed,
        "max_tokens": request.max_tokens,
        "stop": request.stop_sequences or None,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    return payload


class OpenAICompatProvider:
    """One OpenAI-compatible server. `send` makes exactly one HTTP request; retries,
    breaker and limits are the caller's (`Resilience`)."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        http: httpx.AsyncClient,
        api_key: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._http = http
        self._timeout = timeout or httpx.Timeout(60.0, connect=5.0)
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"

    async def send(self, request: ChatRequest, *, model: str, stream: bool = False) -> ChatResponse:
        body = encode_json(build_payload(request, model, stream=stream))
        if stream:
            return await self._stream(body)
        clock = Stopwatch()
        with transport_errors(self.name, self.url):
            answer = await self._http.post(
                self.url, content=body, headers=self._headers, timeout=self._timeout
            )
        if not is_success(answer.status_code):
            raise status_error(self.name, answer, answer.content)
        response = parse_completion(self.name, answer.content)
        return msgspec.structs.replace(response, latency_ms=clock.elapsed_ms())

    async def _stream(self, body: bytes) -> ChatResponse:
        clock = Stopwatch()
        headers = self._headers | {"accept": "text/event-stream"}
        assembler = ChatStreamAssembler(self.name)
        decoder = SseDecoder()
        with transport_errors(self.name, self.url):
            async with self._http.stream(
                "POST", self.url, content=body, headers=headers, timeout=self._timeout
            ) as answer:
                raw = b""
                if not is_success(answer.status_code):
                    raise status_error(self.name, answer, await answer.aread())
                if answer.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores stream=true answers with one JSON document.
                    raw = await answer.aread()
                else:
                    async for piece in answer.aiter_bytes():
                        for event in decoder.feed(piece):
                            assembler.feed(event.data)
                            if assembler.saw_content:
                                clock.mark_first()
        if raw:
            response = parse_completion(self.name, raw)
            return msgspec.structs.replace(response, latency_ms=clock.elapsed_ms())
        for event in decoder.close():
            assembler.feed(event.data)
        if not assembler.finished:
            raise BadResponse(self.name, "stream ended before a finish_reason or [DONE]")
        return msgspec.structs.replace(
            assembler.response(), latency_ms=clock.elapsed_ms(), first_token_ms=clock.first_ms
        )
