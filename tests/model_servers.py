"""Local model servers for the replay provider tests.

No real provider is reachable here; this local server speaks the provider's wire protocol.
`ModelServer` is one small ASGI app under uvicorn, in a background thread on a free
127.0.0.1 port, that answers both wire formats the providers speak:

- ``POST /v1/chat/completions``: OpenAI chat completions, plain and streamed
  (``data:`` chunks, tool-call deltas, the usage chunk asked for by
  ``stream_options.include_usage``, then ``data: [DONE]``); base URL `openai_base_url`;
- ``POST /v1/messages``: the Anthropic Messages API, plain and streamed (named events);
  base URL `anthropic_base_url`.

Behind both is a deterministic "model" (`answer`): its answer is a function of the
requested model string, which carries the version (``scorer-v1`` and ``scorer-v2`` answer
differently), and of the conversation. Offered tools and a conversation that does not end
with a tool result make it call the first tool, with arguments derived from the tool's
JSON schema; once the tool result is back it answers in text that quotes it.

The server checks what a real one would reject (API key, ``anthropic-version``,
``max_tokens``, a ``system`` role inside Anthropic ``messages``), records every request
it sees, counts requests in flight (and the most ever in flight), and can be scripted to
misbehave through `Script`: a fixed latency on every request, a delay before answering
(for timeouts), a stall in the middle of a stream or a slow drip of its events, given
statuses (500s, 429 with ``Retry-After`` or ``retry-after-ms``) a number of times before
answering normally, and a 200 whose body is not JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

VERDICTS = ("approve", "refer", "decline")
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


def unused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# The deterministic model -------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """What the model reads, whichever wire format carried it."""

    texts: list[str]  # every message's text, the system prompt included
    last_user: str
    tools: list[tuple[str, dict[str, Any]]]  # (name, JSON schema of the parameters)
    tool_results: list[str]
    ends_with_tool_result: bool


@dataclass(frozen=True)
class Answer:
    text: str
    tool_name: str | None
    tool_arguments: dict[str, Any] | None
    call_id: str | None
    input_tokens: int
    output_tokens: int

    @property
    def calls_tool(self) -> bool:
        return self.tool_name is not None


def _schema_arguments(schema: dict[str, Any], last_user: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for name, prop in sorted(schema.get("properties", {}).items()):
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind == "string":
            arguments[name] = last_user
        elif kind == "integer":
            arguments[name] = len(last_user)
        elif kind == "number":
            arguments[name] = len(last_user) / 2
        elif kind == "boolean":
            arguments[name] = True
        else:
            arguments[name] = None
    return arguments


def answer(model: str, conversation: Conversation) -> Answer:
    """The model's deterministic answer: the same model string and conversation always
    give the same answer, and another model string (another version) another one."""
    seed = "\0".join([model, conversation.last_user, *conversation.tool_results])
    digest = hashlib.sha256(seed.encode()).hexdigest()
    input_tokens = sum(len(text.split()) for text in conversation.texts)
    if conversation.tools and not conversation.ends_with_tool_result:
        name, schema = conversation.tools[0]
        arguments = _schema_arguments(schema, conversation.last_user)
        return Answer(
            text="",
            tool_name=name,
            tool_arguments=arguments,
            call_id=f"call_{digest[:12]}",
            input_tokens=input_tokens,
            output_tokens=1 + len(json.dumps(arguments).split()),
        )
    verdict = VERDICTS[int(digest[:8], 16) % len(VERDICTS)]
    text = f"{model}: {verdict} ({digest[:8]})"
    if conversation.ends_with_tool_result:
        text += f" given {conversation.tool_results[-1]}"
    return Answer(
        text=text,
        tool_name=None,
        tool_arguments=None,
        call_id=None,
        input_tokens=input_tokens,
        output_tokens=len(text.split()),
    )


def fingerprint(model: str) -> str:
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and "text" in p]
        return "".join(parts)
    return ""


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# Scripted misbehaviour ---------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    delay_s: float = 0.0
    stall_s: float = 0.0  # streams: pause after the first event
    drip_s: float = 0.0  # streams: pause after every event
    retry_after: str | None = None
    retry_after_ms: int | None = None
    garbage: bool = False


class Script:
    """Faults are consumed one per request, in the order they were scripted; requests
    after the last fault are answered normally. `latency_s` applies to every request."""

    def __init__(self) -> None:
        self.latency_s = 0.0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    def _add(self, fault: Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (then succeed)."""
        fault = Fault(status=status, retry_after=retry_after, retry_after_ms=retry_after_ms)
        self._add(fault, times)

    def delay(self, seconds: float, times: int = 1) -> None:
        """Wait `seconds` before answering the next `times` requests."""
        self._add(Fault(delay_s=seconds), times)

    def stall(self, seconds: float, times: int = 1) -> None:
        """Streams: pause `seconds` after the first event of the next `times` requests."""
        self._add(Fault(stall_s=seconds), times)

    def drip(self, seconds: float, times: int = 1) -> None:
        """Streams: pause `seconds` after every event, so that no single read is slow but
        the whole answer is."""
        self._add(Fault(drip_s=seconds), times)

    def garbage(self, times: int = 1) -> None:
        """Answer 200 with a body that is not JSON."""
        self._add(Fault(garbage=True), times)

    def next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.latency_s = 0.0


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival
    status: int = 0


# The server --------------------------------------------------------------------------


class _Abort(Exception):
    """Stop answering: the client went away during a scripted pause."""


@dataclass
class _Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ModelServer:
    """Both wire formats on one loopback port. Use as a context manager, or start/stop.

    No real provider is reachable here; this local server speaks the provider's wire
    protocol.
    """

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.script = Script()
        self._lock = threading.Lock()
        self._seen: list[SeenRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # lifecycle

    def start(self) -> ModelServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
            loop="asyncio",
            http="h11",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # what was seen

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._seen)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._seen)

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        self.script.clear()
        with self._lock:
            self._seen.clear()
            self._max_in_flight = self._in_flight

    # ASGI

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        seen = SeenRequest(path=scope["path"], headers=headers, body=body, at=time.monotonic())
        with self._lock:
            self._seen.append(seen)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            await self._handle(seen, receive, send)
        except _Abort:
            seen.status = 499  # as nginx logs a client that closed first
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _handle(self, seen: SeenRequest, receive: Receive, send: Send) -> None:
        await _pause(receive, self.script.latency_s)
        fault = self.script.next_fault() or Fault()
        await _pause(receive, fault.delay_s)
        anthropic = seen.path == ANTHROPIC_PATH
        if seen.path not in (OPENAI_PATH, ANTHROPIC_PATH):
            reply = _Reply(404, {"error": {"message": f"no route {seen.path}"}})
        elif fault.status is not None:
            reply = _fault_reply(fault, anthropic=anthropic)
        elif fault.garbage:
            seen.status = 200
            await _send_whole(send, 200, b"<html>upstream proxy error</html>", {})
            return
        else:
            problem = self._check_anthropic(seen) if anthropic else self._check_openai(seen)
            if problem is not None:
                reply = problem
            elif isinstance(seen.body, dict) and seen.body.get("stream"):
                seen.status = 200
                events = _anthropic_events(seen.body) if anthropic else _openai_events(seen.body)
                await _send_stream(send, receive, events, fault)
                return
            else:
                body = _anthropic_message(seen.body) if anthropic else _openai_completion(seen.body)
                reply = _Reply(200, body)
        seen.status = reply.status
        await _send_whole(send, reply.status, json.dumps(reply.body).encode(), reply.headers)

    def _check_openai(self, seen: SeenRequest) -> _Reply | None:
        if self.api_key is not None and seen.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            return _Reply(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        body = seen.body
        if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
            return _Reply(
                400,
                {"error": {"message": "model and messages are required", "type": "invalid"}},
            )
        return None

    def _check_anthropic(self, seen: SeenRequest) -> _Reply | None:
        def error(status: int, kind: str, message: str) -> _Reply:
            return _Reply(status, {"type": "error", "error": {"type": kind, "message": message}})

        if self.api_key is not None and seen.headers.get("x-api-key") != self.api_key:
            return error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in seen.headers:
            return error(400, "invalid_request_error", "anthropic-version header is required")
        body = seen.body
        if not isinstance(body, dict) or not body.get("model") or not body.get("messages"):
            return error(400, "invalid_request_error", "model and messages are required")
        if "max_tokens" not in body:
            return error(400, "invalid_request_error", "max_tokens: Field required")
        for index, message in enumerate(body["messages"]):
            if message.get("role") not in ("user", "assistant"):
                return error(
                    400,
                    "invalid_request_error",
                    f"messages.{index}.role: Input should be 'user' or 'assistant'",
                )
        return None


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pause(receive: Receive, seconds: float) -> None:
    """Sleep, unless the client goes away first (then stop answering altogether)."""
    if seconds <= 0:
        return
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
    finally:
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if done:
        raise _Abort


def _fault_reply(fault: Fault, *, anthropic: bool) -> _Reply:
    status = fault.status or 500
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after"] = fault.retry_after
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    kind = "rate_limit_error" if status == 429 else "api_error"
    message = f"injected {status}"
    if anthropic:
        return _Reply(
            status, {"type": "error", "error": {"type": kind, "message": message}}, headers
        )
    return _Reply(status, {"error": {"message": message, "type": kind}}, headers)


async def _send_whole(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    content_type = "application/json" if body.startswith((b"{", b"[")) else "text/html"
    pairs = [(b"content-type", content_type.encode())]
    pairs += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})


async def _send_stream(send: Send, receive: Receive, events: list[str], fault: Fault) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    for index, event in enumerate(events):
        await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        await _pause(receive, fault.drip_s + (fault.stall_s if index == 0 else 0.0))
    await send({"type": "http.response.body", "body": b""})


# OpenAI chat completions -------------------------------------------------------------


def _openai_conversation(body: dict[str, Any]) -> Conversation:
    messages = body["messages"]
    texts = [_text_of(m.get("content")) for m in messages]
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    results = [_text_of(m.get("content")) for m in messages if m.get("role") == "tool"]
    tools = [
        (t["function"]["name"], t["function"].get("parameters") or {})
        for t in body.get("tools") or []
    ]
    return Conversation(
        texts=texts,
        last_user=users[-1] if users else "",
        tools=tools,
        tool_results=results,
        ends_with_tool_result=messages[-1].get("role") == "tool",
    )


def _openai_usage(reply: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _openai_completion(body: dict[str, Any]) -> dict[str, Any]:
    model = body["model"]
    reply = answer(model, _openai_conversation(body))
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.calls_tool:
        message["tool_calls"] = [
            {
                "id": reply.call_id,
                "type": "function",
                "function": {
                    "name": reply.tool_name,
                    "arguments": json.dumps(reply.tool_arguments),
                },
            }
        ]
    return {
        "id": f"chatcmpl-{hashlib.sha256(json.dumps(body).encode()).hexdigest()[:12]}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "system_fingerprint": fingerprint(model),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.calls_tool else "stop",
            }
        ],
        "usage": _openai_usage(reply),
    }


def _openai_events(body: dict[str, Any]) -> list[str]:
    model = body["model"]
    reply = answer(model, _openai_conversation(body))
    base = {
        "id": f"chatcmpl-{hashlib.sha256(json.dumps(body).encode()).hexdigest()[:12]}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "system_fingerprint": fingerprint(model),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in _pieces(reply.text, 4)]
    if reply.calls_tool:
        start: dict[str, Any] = {"index": 0, "id": reply.call_id, "type": "function"}
        start["function"] = {"name": reply.tool_name, "arguments": ""}
        chunks.append(chunk({"tool_calls": [start]}))
        for piece in _pieces(json.dumps(reply.tool_arguments), 5):
            chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, "tool_calls" if reply.calls_tool else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append(base | {"choices": [], "usage": _openai_usage(reply)})
    events = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    return [*events, ": keep-alive\n\n", "data: [DONE]\n\n"]


# Anthropic Messages ------------------------------------------------------------------


def _anthropic_conversation(body: dict[str, Any]) -> Conversation:
    texts = [_text_of(body.get("system"))]
    users: list[str] = []
    results: list[str] = []
    ends_with_result = False
    for message in body["messages"]:
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        ends_with_result = False
        for block in blocks:
            if block.get("type") == "tool_result":
                results.append(_text_of(block.get("content")))
                ends_with_result = True
            elif block.get("type") == "text":
                texts.append(block.get("text") or "")
                if message.get("role") == "user":
                    users.append(block.get("text") or "")
    tools = [(t["name"], t.get("input_schema") or {}) for t in body.get("tools") or []]
    return Conversation(
        texts=texts + results,
        last_user=users[-1] if users else "",
        tools=tools,
        tool_results=results,
        ends_with_tool_result=ends_with_result,
    )


def _anthropic_message(body: dict[str, Any]) -> dict[str, Any]:
    model = body["model"]
    reply = answer(model, _anthropic_conversation(body))
    content: list[dict[str, Any]] = []
    if reply.calls_tool:
        content.append(
            {
                "type": "tool_use",
                "id": f"toolu_{reply.call_id}",
                "name": reply.tool_name,
                "input": reply.tool_arguments,
            }
        )
    else:
        content.append({"type": "text", "text": reply.text})
    return {
        "id": f"msg_{hashlib.sha256(json.dumps(body).encode()).hexdigest()[:12]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.calls_tool else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _anthropic_events(body: dict[str, Any]) -> list[str]:
    message = _anthropic_message(body)
    start = message | {"content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], 4)]
        else:
            opening = block | {"input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _pieces(json.dumps(block["input"]), 5)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


@contextlib.contextmanager
def running(*, api_key: str | None = None) -> Iterator[ModelServer]:
    """A started `ModelServer`, stopped on exit."""
    server = ModelServer(api_key=api_key).start()
    try:
        yield server
    finally:
        server.stop()


# A registry pointing at a running server ---------------------------------------------

API_KEY = "sk-local-test"
ENV = {"TEST_OPENAI_KEY": API_KEY, "TEST_ANTHROPIC_KEY": API_KEY}


def registry_toml(
    server: ModelServer,
    *,
    timeout_s: float = 3.0,
    max_retries: int = 2,
    base_s: float = 0.005,
    cap_s: float = 0.02,
    max_retry_after_s: float = 5.0,
    failure_threshold: int = 100,
    cooldown_s: float = 60.0,
    max_concurrency: int = 8,
) -> str:
    """A registry file for `server`: provider ``oa`` (OpenAI format) with model
    ``scorer`` (any version, wire name ``scorer-{version}``, priced) and ``chat`` (no
    version); provider ``an`` (Anthropic format) with model ``writer`` (any version).
    Backoffs are milliseconds so retry tests stay fast."""
    common = f"""
timeout_s = {timeout_s}
connect_timeout_s = 1
max_concurrency = {max_concurrency}

[providers.NAME.retry]
max_retries = {max_retries}
base_s = {base_s}
cap_s = {cap_s}
max_retry_after_s = {max_retry_after_s}

[providers.NAME.breaker]
failure_threshold = {failure_threshold}
cooldown_s = {cooldown_s}
"""
    return f"""
[providers.oa]
kind = "openai"
base_url = "{server.openai_base_url}"
api_key_env = "TEST_OPENAI_KEY"
{common.replace("NAME", "oa")}
[providers.an]
kind = "anthropic"
base_url = "{server.anthropic_base_url}"
api_key_env = "TEST_ANTHROPIC_KEY"
{common.replace("NAME", "an")}
[[models]]
name = "scorer"
provider = "oa"
upstream_model = "scorer-{{version}}"
price = {{ input_per_mtok = "2.50", output_per_mtok = "10.00" }}

[[models]]
name = "scorer"
version = "v3"
provider = "oa"
upstream_model = "scorer-v3"
price = {{ input_per_mtok = "0.15", output_per_mtok = "0.60", currency = "EUR" }}

[[models]]
name = "chat"
provider = "oa"
upstream_model = "chat-model"

[[models]]
name = "writer"
provider = "an"
upstream_model = "msg-test-{{version}}"
price = {{ input_per_mtok = "3", output_per_mtok = "15" }}
"""
