"""Wrapping a provider client's ``create``: record each call into the open decision.

A wrapped ``create`` looks up the decision open in the caller's context
(`decision.current_decision`); with none it is the original call, untouched. Inside one it
records the exact request (the body parameters, `_wire.request_body`), times the call and
records the response, or the error, which it re-raises. A streamed answer
(``stream=True``) is handed back wrapped: the caller iterates the same chunks or events,
each fed to the provider's accumulator, and the call is recorded when the stream ends, is
closed, fails, or the decision ends first (then as it stands, marked incomplete).

Each provider (`openai`, `anthropic`) supplies an `Adapter`: how its requests and
responses read as a `ModelCall`, and how its stream events add up to a response.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ingest.calls import ModelCall
from ingest.client.builder import utc_now
from ingest.client.instrument._wire import as_dict, materialized, request_body
from ingest.client.instrument.decision import OpenDecision, current_decision

# Set on a wrapped method, so that instrumenting a client twice records each call once.
MARK = "__prov_instrumented__"
INCOMPLETE = ("stream_incomplete", "the stream was closed before its end")


class Accumulator(Protocol):
    """Adds up a stream's chunks or events into the response a plain call would answer."""

    def add(self, event: dict[str, Any]) -> None: ...

    def response(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Adapter:
    """How one provider's calls read: `request` gives the ModelCall members a request
    determines, `response` those a response does, `accumulator` a fresh stream reader."""

    provider: str
    request: Callable[[dict[str, Any]], dict[str, Any]]
    response: Callable[[dict[str, Any]], dict[str, Any]]
    accumulator: Callable[[], Accumulator]
    # Parameters that may be one-shot iterables, listed before they are read.
    iterables: tuple[str, ...] = ("messages", "tools")

    def call(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        started: datetime,
        ended: datetime,
        error: BaseException | tuple[str, str] | None = None,
    ) -> ModelCall:
        fields: dict[str, Any] = {"request_model": str(request.get("model") or "unknown")}
        fields |= self.request(request)
        if response is not None:
            fields |= self.response(response)
        if isinstance(error, BaseException):
            fields |= {"error_type": type(error).__name__, "error_message": str(error)}
        elif error is not None:
            fields |= {"error_type": error[0], "error_message": error[1]}
        return ModelCall(
            provider=self.provider,
            started_at=started,
            ended_at=ended,
            request=request,
            response=response,
            **fields,
        )


class StreamRecord:
    """One streamed call being read: recorded once, when it ends one way or another."""

    def __init__(
        self,
        adapter: Adapter,
        request: dict[str, Any],
        decision: OpenDecision,
        started: datetime,
        *,
        snapshot: Callable[[], dict[str, Any] | None] | None = None,
        complete: Callable[[dict[str, Any] | None], bool] | None = None,
    ) -> None:
        self.adapter = adapter
        self.request = request
        self.decision = decision
        self.started = started
        self.accumulator = adapter.accumulator()
        # A stream helper that accumulates by itself is read through `snapshot` instead.
        self.snapshot = snapshot
        self.complete = complete
        self._done = False
        self._lock = threading.Lock()
        decision.track(self)

    def add(self, item: Any) -> None:
        self.accumulator.add(as_dict(item))

    def end(self, error: BaseException | None = None, *, incomplete: bool = False) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self.decision.untrack(self)
        response = self.snapshot() if self.snapshot is not None else self.accumulator.response()
        if self.complete is not None and not self.complete(response):
            incomplete = True
        failure: BaseException | tuple[str, str] | None = error
        if failure is None and incomplete:
            failure = INCOMPLETE
        call = self.adapter.call(self.request, response, self.started, utc_now(), failure)
        self.decision.record_call(call)

    def abandon(self) -> None:
        self.end(incomplete=True)


class _Recorded:
    """A provider's stream, chunk for chunk, recording the call when it ends; what the
    sync and the async wrapper share."""

    # What the wrapped iterator raises at its end: StopIteration or StopAsyncIteration.
    _end: type[Exception]

    def __init__(self, stream: Any, record: StreamRecord) -> None:
        self._stream = stream
        self._record = record

    def _raised(self, error: BaseException) -> None:
        """The stream raised `error` instead of giving a chunk: it ended, or failed. An
        interruption (a BaseException that is not an Exception) records nothing."""
        if isinstance(error, self._end):
            self._record.end()
        elif isinstance(error, Exception):
            self._record.end(error)

    def __getattr__(self, name: str) -> Any:
        # Everything else (`response`, ...) is the provider stream's own.
        return getattr(self._stream, name)


class RecordedStream(_Recorded):
    """A provider's stream, chunk for chunk, recording the call when it ends."""

    _end = StopIteration

    def __init__(self, stream: Any, record: StreamRecord) -> None:
        super().__init__(stream, record)
        self._iterator: Iterator[Any] = iter(stream)

    def __iter__(self) -> RecordedStream:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._iterator)
        except BaseException as error:
            self._raised(error)
            raise
        self._record.add(item)
        return item

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._record.end(incomplete=True)  # nothing, when it ended already

    def __enter__(self) -> RecordedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRecordedStream(_Recorded):
    """A provider's async stream, chunk for chunk, recording the call when it ends."""

    _end = StopAsyncIteration

    def __init__(self, stream: Any, record: StreamRecord) -> None:
        super().__init__(stream, record)
        self._iterator: AsyncIterator[Any] = stream.__aiter__()

    def __aiter__(self) -> AsyncRecordedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._iterator.__anext__()
        except BaseException as error:
            self._raised(error)
            raise
        self._record.add(item)
        return item

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._record.end(incomplete=True)

    async def __aenter__(self) -> AsyncRecordedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _streamed(request: dict[str, Any]) -> bool:
    return request.get("stream") is True


def wrap_create(create: Callable[..., Any], adapter: Adapter) -> Callable[..., Any]:
    """`create` (bound, sync or async) recording each call made inside a decision.

    Whether a client is async is told by what `create` returns (an awaitable), not by
    its signature: the SDKs decorate their async methods."""

    @functools.wraps(create)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        decision = current_decision()
        if decision is None or args:  # the SDKs take keywords only; anything else is theirs
            return create(*args, **kwargs)
        kwargs = materialized(kwargs, *adapter.iterables)
        request = request_body(kwargs)
        started = utc_now()
        try:
            response = create(**kwargs)
        except Exception as error:
            decision.record_call(adapter.call(request, None, started, utc_now(), error))
            raise
        if inspect.isawaitable(response):
            return _awaited(response, adapter, request, decision, started)
        if _streamed(request):
            return RecordedStream(response, StreamRecord(adapter, request, decision, started))
        decision.record_call(adapter.call(request, as_dict(response), started, utc_now()))
        return response

    setattr(recorded, MARK, True)
    return recorded


async def _awaited(
    pending: Awaitable[Any],
    adapter: Adapter,
    request: dict[str, Any],
    decision: OpenDecision,
    started: datetime,
) -> Any:
    try:
        response = await pending
    except Exception as error:
        decision.record_call(adapter.call(request, None, started, utc_now(), error))
        raise
    if _streamed(request):
        return AsyncRecordedStream(response, StreamRecord(adapter, request, decision, started))
    decision.record_call(adapter.call(request, as_dict(response), started, utc_now()))
    return response


def instrument_method(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Any]) -> None:
    """Replace `owner.name` (a bound method) by `wrap(it)`, once."""
    method = getattr(owner, name)
    if getattr(method, MARK, False):
        return
    setattr(owner, name, wrap(method))


def resource(client: Any, path: str, expected: str) -> Any:
    """The resource at `path` (``chat.completions``) of `client`, which must be the same
    object on every access for an instrumented method set on it to stay there."""
    first = client
    again = client
    for part in path.split("."):
        first = getattr(first, part, None)
        again = getattr(again, part, None)
        if first is None:
            raise TypeError(f"expected {expected}, got {type(client).__name__} (no {path})")
    if first is not again:
        raise TypeError(f"{type(client).__name__}.{path} is not a cached resource; cannot wrap it")
    return first
