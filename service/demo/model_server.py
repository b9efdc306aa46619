"""A local model server that speaks the OpenAI and Anthropic wire formats.

Replay needs a model to call; where no provider is reachable (a laptop, CI, the demo) this
server stands in for one. `model_app` is an ASGI app that answers

- ``POST /v1/chat/completions``: OpenAI chat completions, plain and streamed (``data:``
  chunks, tool-call deltas, the usage chunk asked for by ``stream_options.include_usage``,
  then ``data: [DONE]``); base URL ``http://HOST:PORT/v1``;
- ``POST /v1/messages``: the Anthropic Messages API, plain and streamed (named events);
  base URL ``http://HOST:PORT``.

Behind both formats is one pluggable `Model`: a function from the request, decoded into
the provider-neutral `ChatRequest` whose `model` is the name asked for on the wire, to an
`Answer` (text and/or tool calls). Around it the server does what a real one does: it
refuses what a real one refuses, in that format's error shape (a wrong API key, a missing
``anthropic-version`` or ``max_tokens``, a malformed body, a model the function does not
know: `ModelNotFound`), cuts the text at the first stop sequence the request names, counts
tokens with a pluggable `Tokenizer` (by default whitespace-separated words), and names each
tool call with an id derived from the conversation, so that the same request always gets
the same answer, streamed or not. Input tokens are those of every message's content;
output tokens those of the text, and of each tool call's name and compact JSON arguments.

`respond` is the whole protocol as a function of one request; `model_app` runs it per
request, and `send_reply` writes a `Reply` to an ASGI connection (pacing a stream's events
when asked to).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ledger.errors import ProvError
from replay.providers.types import ChatMessage, ChatRequest, ToolCall, ToolDefinition

Wire = Literal["openai", "anthropic"]
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
WIRE_PATHS: Mapping[str, Wire] = {OPENAI_PATH: "openai", ANTHROPIC_PATH: "anthropic"}

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_json = msgspec.json.Encoder()


# What a model is -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A tool call a model asks for; the server gives it its id."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """A model's turn. `model` is what the server reports answered (a dated snapshot for
    an alias; the name asked for when None); `fingerprint` is OpenAI's
    ``system_fingerprint``."""

    text: str = ""
    tool_calls: tuple[ToolUse, ...] = ()
    model: str | None = None
    fingerprint: str | None = None


Model = Callable[[ChatRequest], Answer]
Tokenizer = Callable[[str], int]


def count_words(text: str) -> int:
    """The default `Tokenizer`: whitespace-separated words."""
    return len(text.split())


class ModelNotFound(ProvError, LookupError):
    """The model function does not know the model name it was asked for (HTTP 404)."""

    kind = "demo-model-not-found"
    title = "Demo model not found"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# Replies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: a whole body, or server-sent `events` written one by one."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = ()


def error_reply(
    wire: Wire,
    status: int,
    kind: str,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An error in the format's own shape: OpenAI's ``{"error": {...}}`` or Anthropic's
    ``{"type": "error", "error": {...}}``."""
    body: dict[str, Any]
    if wire == "anthropic":
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply(status, _json.encode(body), headers=dict(headers or {}))


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.code = code


def respond(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    model: Model,
    api_key: str | None = None,
    tokens: Tokenizer = count_words,
) -> Reply:
    """The answer to one request; `headers` have lowercase names. With `api_key`, requests
    must carry it (``Authorization: Bearer`` or ``x-api-key``, as each format does)."""
    wire = WIRE_PATHS.get(path)
    if wire is None:
        return error_reply("openai", 404, "invalid_request_error", f"no route {path}")
    if method != "POST":
        message = f"{method} is not allowed on {path}; use POST"
        return error_reply(wire, 405, "invalid_request_error", message, headers={"allow": "POST"})
    try:
        if wire == "anthropic":
            return _anthropic(headers, body, _Server(model, api_key, tokens))
        return _openai(headers, body, _Server(model, api_key, tokens))
    except _Refused as refused:
        return error_reply(wire, refused.status, refused.kind, refused.message, code=refused.code)


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise _Refused(400, "invalid_request_error", f"invalid request body: {error}") from None
    except msgspec.DecodeError as error:
        raise _Refused(400, "invalid_request_error", f"the body is not JSON: {error}") from None


# The model's turn, whichever format carried it -----------------------------------------


@dataclass(frozen=True, slots=True)
class _Server:
    model: Model
    api_key: str | None
    tokens: Tokenizer


@dataclass(frozen=True, slots=True)
class _Turn:
    """An answer as the server reports it: cut at a stop sequence, ids given, counted."""

    model: str
    fingerprint: str | None
    text: str
    calls: list[ToolCall]
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    response_id: str


def _take_turn(request: ChatRequest, server: _Server, call_prefix: str) -> _Turn:
    """Ask the model; raises `ModelNotFound` for a name it does not know."""
    answer = server.model(request)
    text, uses, stop = answer.text, answer.tool_calls, None
    hits = [(text.find(s), s) for s in request.stop_sequences if s and s in text]
    if hits:
        # Generation ends at the stop sequence: what would have followed is never said.
        at, stop = min(hits)
        text, uses = text[:at], ()
    # Ids from the conversation, not the body, so a streamed request gets the same ones.
    seed = hashlib.sha256(request.model.encode() + _json.encode(request.messages)).hexdigest()
    calls = [
        ToolCall(
            call_id=call_prefix + hashlib.sha256(f"{seed}/{index}".encode()).hexdigest()[:24],
            name=use.name,
            arguments=use.arguments,
        )
        for index, use in enumerate(uses)
    ]
    tokens = server.tokens
    said = [text, *(call.name + _json.encode(call.arguments).decode() for call in calls)]
    return _Turn(
        model=answer.model or request.model,
        fingerprint=answer.fingerprint,
        text=text,
        calls=calls,
        stop_sequence=stop,
        input_tokens=sum(tokens(message.content) for message in request.messages),
        output_tokens=sum(map(tokens, said)),
        response_id=seed[:24],
    )


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _events(named: list[tuple[str | None, Any]]) -> tuple[str, ...]:
    return tuple(
        (f"event: {name}\n" if name else "") + f"data: {_json.encode(data).decode()}\n\n"
        for name, data in named
    )


# OpenAI chat completions ---------------------------------------------------------------


class _OaPart(msgspec.Struct):
    type: str
    text: str = ""


class _OaFunction(msgspec.Struct):
    name: str
    arguments: str | dict[str, Any] = ""


class _OaToolCall(msgspec.Struct):
    id: str
    function: _OaFunction


class _OaMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_OaPart] | None = None
    tool_calls: list[_OaToolCall] = []
    tool_call_id: str | None = None


class _OaToolSpec(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = {}


class _OaTool(msgspec.Struct):
    function: _OaToolSpec


class _OaStreamOptions(msgspec.Struct):
    include_usage: bool = False


class _OaRequest(msgspec.Struct):
    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[_OaMessage], Meta(min_length=1)]
    tools: list[_OaTool] = []
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: _OaStreamOptions | None = None


def _oa_text(content: str | list[_OaPart] | None) -> str:
    if isinstance(content, list):
        return "".join(part.text for part in content)
    return content or ""


def _oa_arguments(raw: str | dict[str, Any], where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = msgspec.json.decode(raw or "{}")
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise _Refused(400, "invalid_request_error", f"{where} is not a JSON object")
    return value


def _oa_message(index: int, message: _OaMessage) -> ChatMessage:
    if message.role == "tool" and not message.tool_call_id:
        raise _Refused(
            400, "invalid_request_error", f"messages[{index}]: a tool message needs tool_call_id"
        )
    calls = [
        ToolCall(
            call_id=call.id,
            name=call.function.name,
            arguments=_oa_arguments(
                call.function.arguments, f"messages[{index}].tool_calls[{n}].function.arguments"
            ),
        )
        for n, call in enumerate(message.tool_calls)
    ]
    return ChatMessage(
        role="system" if message.role == "developer" else message.role,
        content=_oa_text(message.content),
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
    )


def _openai(headers: Mapping[str, str], body: bytes, server: _Server) -> Reply:
    api_key = server.api_key
    if api_key is not None and headers.get("authorization") != f"Bearer {api_key}":
        raise _Refused(
            401, "invalid_request_error", "Incorrect API key provided.", code="invalid_api_key"
        )
    wire: _OaRequest = _decode(body, _OaRequest)
    stop = [wire.stop] if isinstance(wire.stop, str) else wire.stop or []
    request = ChatRequest(
        model=wire.model,
        messages=[_oa_message(index, message) for index, message in enumerate(wire.messages)],
        tools=[
            ToolDefinition(
                name=tool.function.name,
                description=tool.function.description,
                parameters=tool.function.parameters,
            )
            for tool in wire.tools
        ],
        temperature=wire.temperature,
        top_p=wire.top_p,
        top_k=wire.top_k,
        seed=wire.seed,
        max_tokens=wire.max_tokens or wire.max_completion_tokens,
        stop_sequences=stop,
    )
    try:
        turn = _take_turn(request, server, "call_")
    except ModelNotFound as missing:
        raise _Refused(
            404,
            "invalid_request_error",
            f"The model `{missing.name}` does not exist or you do not have access to it.",
            code="model_not_found",
        ) from None
    if wire.stream:
        include_usage = wire.stream_options is not None and wire.stream_options.include_usage
        return Reply(200, content_type="text/event-stream", events=_oa_events(turn, include_usage))
    return Reply(200, _json.encode(_oa_completion(turn)))


def _oa_usage(turn: _Turn) -> dict[str, int]:
    return {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens,
    }


def _oa_header(turn: _Turn, kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{turn.response_id}",
        "object": kind,
        "created": int(time.time()),
        "model": turn.model,
        "system_fingerprint": turn.fingerprint,
    }


def _oa_finish(turn: _Turn) -> str:
    return "tool_calls" if turn.calls else "stop"


def _oa_completion(turn: _Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.calls:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": _json.encode(call.arguments).decode()},
            }
            for call in turn.calls
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _oa_finish(turn)}
    return _oa_header(turn, "chat.completion") | {"choices": [choice], "usage": _oa_usage(turn)}


def _oa_events(turn: _Turn, include_usage: bool) -> tuple[str, ...]:
    header = _oa_header(turn, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return header | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in _pieces(turn.text, 4)]
    for index, call in enumerate(turn.calls):
        opening = {"index": index, "id": call.call_id, "type": "function"}
        opening["function"] = {"name": call.name, "arguments": ""}
        chunks.append(chunk({"tool_calls": [opening]}))
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in _pieces(_json.encode(call.arguments).decode(), 5)
        ]
    chunks.append(chunk({}, _oa_finish(turn)))
    if include_usage:
        chunks.append(header | {"choices": [], "usage": _oa_usage(turn)})
    # A comment line, as servers send to keep a connection alive; clients must skip it.
    return (*_events([(None, c) for c in chunks]), ": keep-alive\n\n", "data: [DONE]\n\n")


# Anthropic Messages --------------------------------------------------------------------


class _AnText(msgspec.Struct):
    type: str
    text: str = ""


class _AnBlock(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[_AnText] | None = None


class _AnMessage(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[_AnBlock]


class _AnToolSpec(msgspec.Struct):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] = {}


class _AnRequest(msgspec.Struct):
    model: Annotated[str, Meta(min_length=1)]
    max_tokens: Annotated[int, Meta(ge=1)]
    messages: Annotated[list[_AnMessage], Meta(min_length=1)]
    system: str | list[_AnText] | None = None
    tools: list[_AnToolSpec] = []
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] = []
    stream: bool = False


def _an_text(content: str | list[_AnText] | None) -> str:
    if isinstance(content, list):
        return "".join(block.text for block in content)
    return content or ""


def _an_messages(index: int, message: _AnMessage) -> list[ChatMessage]:
    """One wire message as conversation turns: a user message's ``tool_result`` blocks
    become ``tool`` turns, an assistant's ``tool_use`` blocks its tool calls."""
    if isinstance(message.content, str):
        return [ChatMessage(role=message.role, content=message.content)]
    text = "".join(block.text or "" for block in message.content if block.type == "text")
    turns: list[ChatMessage] = []
    calls: list[ToolCall] = []
    for n, block in enumerate(message.content):
        where = f"messages.{index}.content.{n}"
        if block.type == "tool_use":
            if message.role != "assistant" or not block.id or not block.name:
                raise _Refused(
                    400, "invalid_request_error", f"{where}: a tool_use block needs id and name"
                )
            calls.append(ToolCall(call_id=block.id, name=block.name, arguments=block.input or {}))
        elif block.type == "tool_result":
            if message.role != "user" or not block.tool_use_id:
                raise _Refused(
                    400, "invalid_request_error", f"{where}: a tool_result needs tool_use_id"
                )
            turns.append(
                ChatMessage(
                    role="tool", content=_an_text(block.content), tool_call_id=block.tool_use_id
                )
            )
    if message.role == "assistant":
        return [ChatMessage(role="assistant", content=text, tool_calls=calls)]
    if text or not turns:
        turns.append(ChatMessage(role="user", content=text))
    return turns


def _anthropic(headers: Mapping[str, str], body: bytes, server: _Server) -> Reply:
    if server.api_key is not None and headers.get("x-api-key") != server.api_key:
        raise _Refused(401, "authentication_error", "invalid x-api-key")
    if "anthropic-version" not in headers:
        raise _Refused(400, "invalid_request_error", "anthropic-version header is required")
    wire: _AnRequest = _decode(body, _AnRequest)
    system = (
        [] if wire.system is None else [ChatMessage(role="system", content=_an_text(wire.system))]
    )
    request = ChatRequest(
        model=wire.model,
        messages=system
        + [
            turn
            for index, message in enumerate(wire.messages)
            for turn in _an_messages(index, message)
        ],
        tools=[
            ToolDefinition(
                name=tool.name, description=tool.description, parameters=tool.input_schema
            )
            for tool in wire.tools
        ],
        temperature=wire.temperature,
        top_p=wire.top_p,
        top_k=wire.top_k,
        max_tokens=wire.max_tokens,
        stop_sequences=wire.stop_sequences,
    )
    try:
        turn = _take_turn(request, server, "toolu_")
    except ModelNotFound as missing:
        raise _Refused(404, "not_found_error", f"model: {missing.name}") from None
    if wire.stream:
        return Reply(200, content_type="text/event-stream", events=_an_events(turn))
    return Reply(200, _json.encode(_an_message(turn)))


def _an_stop_reason(turn: _Turn) -> str:
    if turn.calls:
        return "tool_use"
    return "stop_sequence" if turn.stop_sequence is not None else "end_turn"


def _an_message(turn: _Turn) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if turn.text or not turn.calls:
        content.append({"type": "text", "text": turn.text})
    content += [
        {"type": "tool_use", "id": call.call_id, "name": call.name, "input": call.arguments}
        for call in turn.calls
    ]
    return {
        "id": f"msg_{turn.response_id}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": content,
        "stop_reason": _an_stop_reason(turn),
        "stop_sequence": turn.stop_sequence,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens},
    }


def _an_events(turn: _Turn) -> tuple[str, ...]:
    message = _an_message(turn)
    opening = message | {"content": [], "stop_reason": None, "stop_sequence": None}
    opening["usage"] = {"input_tokens": turn.input_tokens, "output_tokens": 1}
    named: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": opening}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], 4)]
        else:
            start = block | {"input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(_json.encode(block["input"]).decode(), 5)
            ]
        named.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        named += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        named.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    named.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {"output_tokens": turn.output_tokens},
            },
        )
    )
    named.append(("message_stop", {"type": "message_stop"}))
    return _events(named)


# ASGI ----------------------------------------------------------------------------------


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def send_reply(
    send: Send, reply: Reply, pace: Callable[[int], Awaitable[None]] | None = None
) -> None:
    """Write `reply`; for a stream, `pace(index)` runs after each event is sent."""
    headers = [(b"content-type", reply.content_type.encode())]
    headers += [(name.encode(), value.encode()) for name, value in reply.headers.items()]
    if not reply.events:
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    for index, event in enumerate(reply.events):
        await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        if pace is not None:
            await pace(index)
    await send({"type": "http.response.body", "body": b""})


def model_app(
    model: Model, *, api_key: str | None = None, tokens: Tokenizer = count_words
) -> AsgiApp:
    """The ASGI app that serves `model` in both wire formats, counting with `tokens`."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan work to do
        body = await read_body(receive)
        headers = request_headers(scope)
        reply = respond(
            scope["method"],
            scope["path"],
            headers,
            body,
            model=model,
            api_key=api_key,
            tokens=tokens,
        )
        await send_reply(send, reply)

    return app
