"""Local model servers for the replay tests.

No real provider is reachable here; these local servers speak the providers' wire
protocols. The protocols themselves (OpenAI chat completions and Anthropic Messages, plain
and streamed, with the checks a real server makes) are product code,
`service.demo.model_server`; this module runs them under uvicorn in a background thread on a
free 127.0.0.1 port (`LoopbackServer`), and adds what tests need around them
(`ModelServer`).

Behind `ModelServer` is, by default, a deterministic test "model" (`answer`): its answer is
a function of the requested model string, which carries the version (``scorer-v1`` and
``scorer-v2`` answer differently), and of the conversation. Offered tools and a
conversation that does not end with a tool result make it call the first tool, with
arguments derived from the tool's JSON schema; once the tool result is back it answers in
text that quotes it. A model string ending in ``-loop`` calls the first tool on every turn,
as a model stuck in a loop would.

`ModelServer` records every request it sees, counts requests in flight (and the most ever
in flight), and can be scripted to misbehave through `Script`: a fixed latency on every
request, a delay before answering (for timeouts), a stall in the middle of a stream or a
slow drip of its events, given statuses (500s, 429 with ``Retry-After`` or
``retry-after-ms``) a number of times before answering normally, and a 200 whose body is
not JSON.
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
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn

from replay.providers import ChatRequest
from service.demo.model_server import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    WIRE_PATHS,
    Answer,
    AsgiApp,
    Model,
    Receive,
    Reply,
    Scope,
    Send,
    ToolUse,
    error_reply,
    read_body,
    request_headers,
    respond,
    send_reply,
)

__all__ = [
    "ANTHROPIC_PATH",
    "API_KEY",
    "ENV",
    "OPENAI_PATH",
    "VERDICTS",
    "Answer",
    "Conversation",
    "Fault",
    "LoopbackServer",
    "ModelServer",
    "Script",
    "SeenRequest",
    "answer",
    "deterministic_model",
    "fingerprint",
    "providers_toml",
    "registry_toml",
    "running",
    "unused_port",
]

VERDICTS = ("approve", "refer", "decline")


def unused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# The deterministic test model ----------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    """What the test model reads, whichever wire format carried it."""

    texts: list[str]  # every message's text, the system prompt included
    last_user: str
    tools: list[tuple[str, dict[str, Any]]]  # (name, JSON schema of the parameters)
    tool_results: list[str]
    ends_with_tool_result: bool


def conversation_of(request: ChatRequest) -> Conversation:
    messages = request.messages
    return Conversation(
        texts=[message.content for message in messages],
        last_user=next((m.content for m in reversed(messages) if m.role == "user"), ""),
        tools=[(tool.name, tool.parameters) for tool in request.tools],
        tool_results=[message.content for message in messages if message.role == "tool"],
        ends_with_tool_result=bool(messages) and messages[-1].role == "tool",
    )


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


def fingerprint(model: str) -> str:
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]


def answer(model: str, conversation: Conversation) -> Answer:
    """The test model's deterministic answer: the same model string and conversation
    always give the same answer, and another model string (another version) another one."""
    seed = "\0".join([model, conversation.last_user, *conversation.tool_results])
    digest = hashlib.sha256(seed.encode()).hexdigest()
    looping = model.endswith("-loop")
    if conversation.tools and (looping or not conversation.ends_with_tool_result):
        name, schema = conversation.tools[0]
        arguments = _schema_arguments(schema, conversation.last_user)
        return Answer(tool_calls=(ToolUse(name, arguments),), fingerprint=fingerprint(model))
    verdict = VERDICTS[int(digest[:8], 16) % len(VERDICTS)]
    text = f"{model}: {verdict} ({digest[:8]})"
    if conversation.ends_with_tool_result:
        text += f" given {conversation.tool_results[-1]}"
    return Answer(text=text, fingerprint=fingerprint(model))


def deterministic_model(request: ChatRequest) -> Answer:
    """`answer` as a `service.demo.model_server.Model`."""
    return answer(request.model, conversation_of(request))


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


def _fault_reply(path: str, fault: Fault) -> Reply:
    status = fault.status or 500
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["retry-after"] = fault.retry_after
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    kind = "rate_limit_error" if status == 429 else "api_error"
    wire = WIRE_PATHS.get(path, "openai")
    return error_reply(wire, status, kind, f"injected {status}", headers=headers)


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival
    status: int = 0


# The servers -------------------------------------------------------------------------


class LoopbackServer:
    """An ASGI app under uvicorn, in a background thread, on a free 127.0.0.1 port. Use
    as a context manager, or start/stop."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> LoopbackServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
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

    def __enter__(self) -> LoopbackServer:
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


class _Abort(Exception):
    """Stop answering: the client went away during a scripted pause."""


class ModelServer(LoopbackServer):
    """Both wire formats on one loopback port, serving `model` (the test model unless
    told otherwise), with every request recorded and faults scripted through `script`.

    No real provider is reachable here; this local server speaks the provider's wire
    protocol.
    """

    def __init__(self, *, api_key: str | None = None, model: Model = deterministic_model) -> None:
        super().__init__(self._app)
        self.api_key = api_key
        self.model = model
        self.script = Script()
        self._lock = threading.Lock()
        self._seen: list[SeenRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0

    def start(self) -> ModelServer:
        super().start()
        return self

    def __enter__(self) -> ModelServer:
        return self.start()

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
        raw = await read_body(receive)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        seen = SeenRequest(
            path=scope["path"], headers=request_headers(scope), body=body, at=time.monotonic()
        )
        with self._lock:
            self._seen.append(seen)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            await self._handle(scope["method"], seen, raw, receive, send)
        except _Abort:
            seen.status = 499  # as nginx logs a client that closed first
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _handle(
        self, method: str, seen: SeenRequest, raw: bytes, receive: Receive, send: Send
    ) -> None:
        await _pause(receive, self.script.latency_s)
        fault = self.script.next_fault() or Fault()
        await _pause(receive, fault.delay_s)
        if fault.status is not None:
            reply = _fault_reply(seen.path, fault)
        elif fault.garbage:
            reply = Reply(200, b"<html>upstream proxy error</html>", content_type="text/html")
        else:
            reply = respond(
                method, seen.path, seen.headers, raw, model=self.model, api_key=self.api_key
            )
        seen.status = reply.status

        async def pace(index: int) -> None:
            await _pause(receive, fault.drip_s + (fault.stall_s if index == 0 else 0.0))

        await send_reply(send, reply, pace)


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


def providers_toml(server: LoopbackServer, settings: str) -> str:
    """The providers of a registry for `server`: ``oa`` in the OpenAI format and ``an`` in
    the Anthropic one, reading their API keys from the variables of `ENV`. Each is followed
    by `settings` (TOML), in which ``NAME`` stands for the provider's name."""
    return f"""
[providers.oa]
kind = "openai"
base_url = "{server.openai_base_url}"
api_key_env = "TEST_OPENAI_KEY"
{settings.replace("NAME", "oa")}
[providers.an]
kind = "anthropic"
base_url = "{server.anthropic_base_url}"
api_key_env = "TEST_ANTHROPIC_KEY"
{settings.replace("NAME", "an")}
"""


def registry_toml(
    server: LoopbackServer,
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
    return (
        providers_toml(server, common)
        + """[[models]]
name = "scorer"
provider = "oa"
upstream_model = "scorer-{version}"
price = { input_per_mtok = "2.50", output_per_mtok = "10.00" }

[[models]]
name = "scorer"
version = "v3"
provider = "oa"
upstream_model = "scorer-v3"
price = { input_per_mtok = "0.15", output_per_mtok = "0.60", currency = "EUR" }

[[models]]
name = "chat"
provider = "oa"
upstream_model = "chat-model"

[[models]]
name = "writer"
provider = "an"
upstream_model = "msg-test-{version}"
price = { input_per_mtok = "3", output_per_mtok = "15" }
"""
    )
