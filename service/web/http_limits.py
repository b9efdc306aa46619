"""Connection limits for `prov serve`: what uvicorn leaves unbounded.

uvicorn times out a kept-alive connection between requests, but not a connection that
never sends a request, nor one that trickles its headers or its body, and it accepts
connections until the process runs out of descriptors. `GuardedHttpToolsProtocol` (handed
to uvicorn as its HTTP protocol class) adds, per connection:

- a header deadline, from connecting (or from the first byte of the next request) to the
  end of the headers, and a bound on the headers' size;
- a body deadline, from the end of the headers to the end of the body, which also covers a
  body still arriving after the answer (uvicorn reads and drops it);
- a cap on the worker's open connections: one over it is answered 503 problem+json with
  Retry-After once its headers are in, and closed.

`read_deadline` is the matching ASGI middleware: a body not received in time is answered
408 problem+json (the protocol closes the connection after that answer).
"""

from __future__ import annotations

import asyncio
import functools
import resource
from asyncio import TimerHandle
from collections.abc import Callable
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from prometheus_client import Counter
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from httpapi.errors import HeadersTooLarge, RequestTimeout, TooManyConnections
from httpapi.problems import PROBLEM_MEDIA_TYPE, problem_for
from ledger.errors import LedgerError
from service.settings import Settings

CUT_OFF = Counter(
    "prov_http_connections_cut_total",
    "Connections refused or closed by a limit: over-cap (answered 503), dropped (over the "
    "cap's margin, unanswered), header-timeout, body-timeout, headers-too-large.",
    ["reason"],
)

# Descriptors kept back from connections: the database pool, logs, spooled uploads.
RESERVED_DESCRIPTORS = 128
# A connection over the cap gets this long (at most) to send its headers and be refused.
REFUSAL_SECONDS = 2.0
# After a body deadline, the app's own 408 closes the connection; this is the backstop.
CLOSE_GRACE_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1


class Limits(msgspec.Struct, frozen=True):
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    # Connections answered normally, and the count above which one is dropped unanswered.
    max_connections: int
    drop_above: int


def limits_for(settings: Settings, soft_descriptors: int) -> Limits:
    """The limits one worker applies, with the connection cap kept below its descriptor
    limit so that a flood of connections is refused, never a cause of failed appends."""
    usable = max(2, soft_descriptors - RESERVED_DESCRIPTORS)
    cap = max(1, min(settings.max_connections, usable * 15 // 16))
    return Limits(
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
        max_connections=cap,
        drop_above=min(usable, cap + max(64, cap // 8)),
    )


# What an unlimited descriptor limit is taken to be.
UNLIMITED_DESCRIPTORS = 1 << 20


@functools.cache
def worker_limits() -> Limits:
    """Read once per worker: workers see the settings `prov serve` exported."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = UNLIMITED_DESCRIPTORS
    return limits_for(Settings.from_env(), soft)


def problem_bytes(
    error: LedgerError, status_line: bytes, headers: list[tuple[bytes, bytes]]
) -> bytes:
    """A whole HTTP/1.1 answer carrying the problem document for `error`, closing."""
    body = msgspec.json.encode(problem_for(error))
    head = [status_line]
    for name, value in [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *headers,
    ]:
        head.append(name + b": " + value + b"\r\n")
    return b"".join(head) + b"\r\n" + body


async def refuse_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app a connection over the cap is given: 503 with Retry-After, then close."""
    error = TooManyConnections(
        "the server holds as many connections as it may; retry after Retry-After seconds",
        retry_after=RETRY_AFTER_SECONDS,
    )
    body = msgspec.json.encode(problem_for(error))
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines, a header size bound
    and a per-worker connection cap (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = worker_limits()
        self.header_timer: TimerHandle | None = None
        self.body_timer: TimerHandle | None = None
        self.header_bytes = 0
        self.request_started = False
        self.rejected = False

    # --- connections ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_now = len(self.connections)
        if open_now > self.limits.drop_above:
            # Even a refusal costs a descriptor for a while; past this, none is spent.
            CUT_OFF.labels("dropped").inc()
            transport.abort()
            return
        deadline = self.limits.header_timeout
        if open_now > self.limits.max_connections:
            CUT_OFF.labels("over-cap").inc()
            self.app = refuse_connection
            deadline = min(deadline, REFUSAL_SECONDS)
        self.header_timer = self.loop.call_later(deadline, self.on_header_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self.clear_timers()
        super().connection_lost(exc)

    def clear_timers(self) -> None:
        for timer in (self.header_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = None

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            return
        super().data_received(data)

    # --- the header phase ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.request_started = True
        self.header_bytes = 0
        if self.header_timer is None:  # the next request on a kept-alive connection
            self.header_timer = self.loop.call_later(
                self.limits.header_timeout, self.on_header_deadline
            )

    def on_url(self, url: bytes) -> None:
        self.count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count_header_bytes(len(name) + len(value) + 4)
        if not self.rejected:
            super().on_header(name, value)

    def count_header_bytes(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > self.limits.max_header_bytes and not self.rejected:
            CUT_OFF.labels("headers-too-large").inc()
            self.reject(
                HeadersTooLarge(
                    f"the request line and headers exceed {self.limits.max_header_bytes} bytes"
                ),
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            )

    def on_headers_complete(self) -> None:
        if self.rejected:
            return
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self.request_started = False
        if self.body_timer is not None:
            self.body_timer.cancel()
        self.body_timer = self.loop.call_later(self.limits.body_timeout, self.on_body_deadline)
        super().on_headers_complete()

    def on_header_deadline(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        CUT_OFF.labels("header-timeout").inc()
        if self.request_started:
            self.reject(
                RequestTimeout(
                    f"the request headers did not arrive within {self.limits.header_timeout:g} s"
                ),
                b"HTTP/1.1 408 Request Timeout\r\n",
            )
        else:  # nothing sent at all: just close, as for an idle kept-alive connection
            self.transport.close()

    def reject(self, error: LedgerError, status_line: bytes) -> None:
        """Answer a request the app never saw, and close."""
        self.rejected = True
        self.clear_timers()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(problem_bytes(error, status_line, []))
        self.transport.close()

    # --- the body phase -----------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        if not self.rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if not self.rejected:
            super().on_message_complete()

    def on_body_deadline(self) -> None:
        self.body_timer = None
        cycle = self.cycle
        if self.transport.is_closing():
            return
        CUT_OFF.labels("body-timeout").inc()
        if cycle is None or cycle.response_complete:
            # The answer went out early (413, 401) and the client still sends the body.
            self.transport.close()
            return
        # The app answers 408 (`read_deadline`); that answer must close the connection,
        # since the rest of the body may still arrive. If no answer comes, close anyway.
        cycle.keep_alive = False
        self.body_timer = self.loop.call_later(CLOSE_GRACE_SECONDS, self.transport.close)


def read_deadline(seconds: float) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware: the request body must arrive within `seconds` of the app being called
    (when the headers are in); past that, reading it raises `RequestTimeout` (408)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            deadline = asyncio.get_running_loop().time() + seconds
            body_done = timed_out = False

            async def timed_receive() -> ReceiveMessage:
                nonlocal body_done, timed_out
                if body_done:
                    return await receive()
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    timed_out = True
                    raise RequestTimeout(
                        f"the request body did not arrive within {seconds:g} s"
                    ) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message

            async def closing_send(message: Message) -> None:
                # The rest of the body may still be on its way: close after answering.
                if timed_out and message["type"] == "http.response.start":
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, timed_receive, closing_send)

        return middleware

    return wrap
