"""`instrument_anthropic`: record an Anthropic client's Messages calls into the open decision.

``client.messages.create`` and ``client.messages.stream`` of the given
`anthropic.Anthropic` or `anthropic.AsyncAnthropic` instance are wrapped; nothing is
imported from the `anthropic` package. A call is read as follows:

- the request: ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
  ``stop_sequences``, the tools offered (``input_schema`` is the parameters), the
  ``system`` prompt and the messages: a ``tool_use`` block is an assistant's tool call, a
  ``tool_result`` block a ``tool`` turn answering it (as replay rebuilds them);
- the response: its text blocks joined, its ``tool_use`` blocks, ``stop_reason``, ``id``,
  ``model`` (the version that answered) and usage (cache reads too);
- a stream (``create(stream=True)``): its events add up to the message a plain call
  answers; ``messages.stream(...)``: the helper's own accumulated message, read when its
  ``with`` block ends (the call's time ends there too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from ingest.calls import CalledTool, ObservedMessage
from ingest.calls.values import integer, number, obj, text
from ingest.client.builder import utc_now
from ingest.client.instrument._wire import (
    as_dict,
    items,
    materialized,
    offered_tools,
    request_body,
)
from ingest.client.instrument._wrap import (
    MARK,
    Adapter,
    StreamRecord,
    instrument_method,
    resource,
    wrap_create,
)
from ingest.client.instrument.decision import OpenDecision, current_decision

C = TypeVar("C")
_json = msgspec.json.Decoder()
# `messages.stream` parameters that shape the helper's parsing, not the request body.
_HELPER_ONLY = frozenset({"output_format"})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        text(block.get("text")) or ""
        for block in map(obj, items(content))
        if block.get("type") == "text"
    )


def _has_text(content: Any) -> bool:
    return any(obj(block).get("type") == "text" for block in items(content))


def _tool_uses(content: Any) -> tuple[CalledTool, ...]:
    return tuple(
        CalledTool(
            call_id=text(block.get("id")) or "",
            name=text(block.get("name")) or "",
            arguments=obj(block.get("input")),
        )
        for block in map(obj, items(content))
        if block.get("type") == "tool_use"
    )


def _turns(raw: Any) -> list[ObservedMessage]:
    """One wire message as conversation turns (tool results are turns of their own)."""
    message = obj(raw)
    role = text(message.get("role")) or "user"
    content = message.get("content")
    if role == "assistant":
        return [ObservedMessage(role=role, content=_text(content), tool_calls=_tool_uses(content))]
    turns = [
        ObservedMessage(
            role="tool",
            content=_text(block.get("content")),
            tool_call_id=text(block.get("tool_use_id")),
        )
        for block in map(obj, items(content))
        if block.get("type") == "tool_result"
    ]
    said = _text(content)
    if said or not turns:
        turns.append(ObservedMessage(role=role, content=said))
    return turns


def request_fields(request: dict[str, Any]) -> dict[str, Any]:
    """The `ModelCall` members a Messages request determines."""
    system = request.get("system")
    messages = [ObservedMessage(role="system", content=_text(system))] if system else []
    for message in items(request.get("messages")):
        messages += _turns(message)
    return {
        "temperature": number(request.get("temperature")),
        "top_p": number(request.get("top_p")),
        "top_k": integer(request.get("top_k")),
        "max_tokens": integer(request.get("max_tokens")),
        "stop_sequences": tuple(s for s in items(request.get("stop_sequences")) if text(s)),
        "tools": offered_tools(request.get("tools"), schema="input_schema"),
        "messages": tuple(messages),
    }


def response_fields(response: dict[str, Any]) -> dict[str, Any]:
    """The `ModelCall` members a message (or an accumulated stream) determines."""
    content = response.get("content")
    usage = obj(response.get("usage"))
    return {
        "response_model": text(response.get("model")),
        "response_id": text(response.get("id")),
        "text": _text(content) if _has_text(content) else None,
        "tool_calls": _tool_uses(content),
        "finish_reason": text(response.get("stop_reason")),
        "input_tokens": integer(usage.get("input_tokens")),
        "output_tokens": integer(usage.get("output_tokens")),
        "cache_read_input_tokens": integer(usage.get("cache_read_input_tokens")),
    }


class EventAccumulator:
    """Messages stream events added up into the ``message`` they stream."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._json: dict[int, str] = {}

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            self._message = dict(obj(event.get("message")))
            self._message["content"] = list(items(self._message.get("content")))
            self._message["usage"] = dict(obj(self._message.get("usage")))
            return
        message = self._message
        if message is None:
            return  # events before the start carry nothing to add up
        blocks: list[dict[str, Any]] = message["content"]
        index = integer(event.get("index"))
        if kind == "content_block_start" and index is not None:
            block = dict(obj(event.get("content_block")))
            while len(blocks) <= index:
                blocks.append({})
            blocks[index] = block
        elif kind == "content_block_delta" and index is not None and index < len(blocks):
            self._add_delta(index, blocks[index], obj(event.get("delta")))
        elif kind == "content_block_stop" and index is not None and index in self._json:
            raw = self._json.pop(index)
            try:
                blocks[index]["input"] = _json.decode(raw or "{}")
            except msgspec.DecodeError:
                blocks[index]["input"] = {"_unparsed": raw}
        elif kind == "message_delta":
            delta = obj(event.get("delta"))
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    message[key] = delta[key]
            usage = {k: v for k, v in obj(event.get("usage")).items() if v is not None}
            message["usage"].update(usage)

    def _add_delta(self, index: int, block: dict[str, Any], delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = (text(block.get("text")) or "") + (text(delta.get("text")) or "")
        elif kind == "input_json_delta":
            self._json[index] = self._json.get(index, "") + (text(delta.get("partial_json")) or "")
        elif kind == "thinking_delta":
            block["thinking"] = (text(block.get("thinking")) or "") + (
                text(delta.get("thinking")) or ""
            )
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def response(self) -> dict[str, Any] | None:
        return self._message


ANTHROPIC = Adapter(
    provider="anthropic",
    request=request_fields,
    response=response_fields,
    accumulator=EventAccumulator,
    iterables=("messages", "tools", "system", "stop_sequences"),
)


def _stopped(response: dict[str, Any] | None) -> bool:
    # The helper's message has a stop reason once the stream reached its end.
    return response is not None and response.get("stop_reason") is not None


class _Helper:
    """A ``messages.stream(...)`` manager whose call is recorded when its block ends."""

    def __init__(self, manager: Any, request: dict[str, Any], decision: OpenDecision) -> None:
        self._manager = manager
        self._request = request
        self._decision = decision
        self._stream: Any = None
        self._record: StreamRecord | None = None

    def _start(self) -> StreamRecord:
        return StreamRecord(
            ANTHROPIC,
            self._request,
            self._decision,
            utc_now(),
            snapshot=self._snapshot,
            complete=_stopped,
        )

    def _snapshot(self) -> dict[str, Any] | None:
        if self._stream is None:
            return None
        try:
            return as_dict(self._stream.current_message_snapshot)
        except (AssertionError, AttributeError):  # nothing streamed yet
            return None

    def _end(self, error: BaseException | None) -> None:
        if self._record is not None:
            self._record.end(error)


class _SyncHelper(_Helper):
    def __enter__(self) -> Any:
        self._record = self._start()
        try:
            self._stream = self._manager.__enter__()
        except Exception as error:
            self._end(error)
            raise
        return self._stream

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> Any:
        try:
            return self._manager.__exit__(kind, error, traceback)
        finally:
            self._end(error)


class _AsyncHelper(_Helper):
    async def __aenter__(self) -> Any:
        self._record = self._start()
        try:
            self._stream = await self._manager.__aenter__()
        except Exception as error:
            self._end(error)
            raise
        return self._stream

    async def __aexit__(self, kind: object, error: BaseException | None, traceback: object) -> Any:
        try:
            return await self._manager.__aexit__(kind, error, traceback)
        finally:
            self._end(error)


def _wrap_stream(stream: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(stream)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        decision = current_decision()
        if decision is None or args:
            return stream(*args, **kwargs)
        kwargs = materialized(kwargs, *ANTHROPIC.iterables)
        manager = stream(**kwargs)
        # The helper sends what `create(stream=True)` would.
        request = request_body(kwargs, drop=_HELPER_ONLY) | {"stream": True}
        if hasattr(manager, "__aenter__"):
            return _AsyncHelper(manager, request, decision)
        return _SyncHelper(manager, request, decision)

    setattr(recorded, MARK, True)
    return recorded


def instrument_anthropic(client: C) -> C:
    """Record every ``messages.create`` and ``messages.stream`` call `client` (an
    `anthropic.Anthropic` or `anthropic.AsyncAnthropic`) makes inside a decision block;
    returns `client`.

    Only this instance is changed (a copy made by ``with_options`` is not), and doing it
    again changes nothing. Calls outside a decision block are not recorded.
    """
    messages = resource(client, "messages", "an anthropic.Anthropic or AsyncAnthropic client")
    instrument_method(messages, "create", lambda create: wrap_create(create, ANTHROPIC))
    if callable(getattr(messages, "stream", None)):
        instrument_method(messages, "stream", _wrap_stream)
    return client
