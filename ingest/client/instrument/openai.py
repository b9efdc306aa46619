"""`instrument_openai`: record an OpenAI client's chat completions into the open decision.

``client.chat.completions.create`` of the given `openai.OpenAI` or `openai.AsyncOpenAI`
instance is wrapped (`_wrap`); nothing is imported from the `openai` package. A call is
read as follows:

- the request: ``model``, the sampling parameters (``temperature``, ``top_p``, ``seed``,
  ``max_tokens`` or ``max_completion_tokens``, ``stop``), the ``function`` tools offered,
  and the messages (a ``developer`` message is the system prompt, as for replay; content
  parts are joined by their text);
- the response: the first choice's text, tool calls and finish reason, ``id``, ``model``
  (the version that answered) and ``system_fingerprint``, and usage (cached prompt and
  reasoning tokens too);
- a stream (``stream=True``): its chunks add up to the completion a plain call answers.
  Usage is in a stream only when the request asks for it
  (``stream_options={"include_usage": True}``); the stream is not changed to get it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ingest.calls import CalledTool, ObservedMessage
from ingest.calls.values import integer, number, obj, text
from ingest.client.instrument._wire import (
    arguments_of,
    items,
    offered_tools,
)
from ingest.client.instrument._wrap import Adapter, instrument_method, resource, wrap_create

C = TypeVar("C")


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    # Content parts: the text ones, as the model reads them; images have no text.
    return "".join(text(obj(part).get("text")) or "" for part in items(value))


def _called(raw: Any) -> tuple[CalledTool, ...]:
    calls = []
    for item in items(raw):
        call = obj(item)
        function = obj(call.get("function"))
        calls.append(
            CalledTool(
                call_id=text(call.get("id")) or "",
                name=text(function.get("name")) or "",
                arguments=arguments_of(function.get("arguments")),
            )
        )
    return tuple(calls)


def _message(raw: Any) -> ObservedMessage:
    message = obj(raw)
    role = text(message.get("role")) or "user"
    return ObservedMessage(
        role="system" if role == "developer" else role,
        content=_content(message.get("content")),
        tool_calls=_called(message.get("tool_calls")),
        tool_call_id=text(message.get("tool_call_id")),
    )


def _stop(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    return tuple(item for item in items(raw) if isinstance(item, str))


def request_fields(request: dict[str, Any]) -> dict[str, Any]:
    """The `ModelCall` members a chat completions request determines."""
    max_tokens = integer(request.get("max_tokens"))
    return {
        "temperature": number(request.get("temperature")),
        "top_p": number(request.get("top_p")),
        "seed": integer(request.get("seed")),
        "max_tokens": max_tokens or integer(request.get("max_completion_tokens")),
        "stop_sequences": _stop(request.get("stop")),
        "tools": offered_tools(request.get("tools"), inside="function", schema="parameters"),
        "messages": tuple(_message(message) for message in items(request.get("messages"))),
    }


def response_fields(response: dict[str, Any]) -> dict[str, Any]:
    """The `ModelCall` members a chat completion (or an accumulated stream) determines."""
    choices = items(response.get("choices"))
    choice = obj(choices[0]) if choices else {}
    message = obj(choice.get("message"))
    usage = obj(response.get("usage"))
    return {
        "response_model": text(response.get("model")),
        "fingerprint": text(response.get("system_fingerprint")),
        "response_id": text(response.get("id")),
        "text": text(message.get("content")),
        "tool_calls": _called(message.get("tool_calls")),
        "finish_reason": text(choice.get("finish_reason")),
        "input_tokens": integer(usage.get("prompt_tokens")),
        "output_tokens": integer(usage.get("completion_tokens")),
        "cache_read_input_tokens": integer(
            obj(usage.get("prompt_tokens_details")).get("cached_tokens")
        ),
        "reasoning_output_tokens": integer(
            obj(usage.get("completion_tokens_details")).get("reasoning_tokens")
        ),
    }


class ChunkAccumulator:
    """Chat completion chunks added up into the ``chat.completion`` they stream."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Any = None

    def add(self, event: dict[str, Any]) -> None:
        if not self._head:
            self._head = {
                key: event[key]
                for key in ("id", "created", "model", "system_fingerprint", "service_tier")
                if key in event
            }
        if event.get("usage") is not None:
            self._usage = event["usage"]
        for raw in items(event.get("choices")):
            self._add_choice(obj(raw))

    def _add_choice(self, chunk: dict[str, Any]) -> None:
        index = integer(chunk.get("index")) or 0
        choice = self._choices.setdefault(
            index,
            {"index": index, "message": {"role": "assistant", "content": None}, "calls": {}},
        )
        delta = obj(chunk.get("delta"))
        message = choice["message"]
        for key in ("content", "refusal"):
            piece = text(delta.get(key))
            if piece is not None:
                message[key] = (message.get(key) or "") + piece
        for raw in items(delta.get("tool_calls")):
            part = obj(raw)
            call = choice["calls"].setdefault(
                integer(part.get("index")) or 0,
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if part.get("id"):
                call["id"] = part["id"]
            function = obj(part.get("function"))
            call["function"]["name"] += text(function.get("name")) or ""
            call["function"]["arguments"] += text(function.get("arguments")) or ""
        if chunk.get("finish_reason") is not None:
            choice["finish_reason"] = chunk["finish_reason"]

    def response(self) -> dict[str, Any] | None:
        if not self._head and not self._choices:
            return None
        choices = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            message = dict(choice["message"])
            if choice["calls"]:
                message["tool_calls"] = [choice["calls"][n] for n in sorted(choice["calls"])]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        completion = {"object": "chat.completion", **self._head, "choices": choices}
        if self._usage is not None:
            completion["usage"] = self._usage
        return completion


OPENAI = Adapter(
    provider="openai",
    request=request_fields,
    response=response_fields,
    accumulator=ChunkAccumulator,
)


def instrument_openai(client: C) -> C:
    """Record every ``chat.completions.create`` call `client` (an `openai.OpenAI` or
    `openai.AsyncOpenAI`) makes inside a decision block; returns `client`.

    Only this instance is changed (a copy made by ``with_options`` is not), and doing it
    again changes nothing. Calls outside a decision block are not recorded.
    """
    completions = resource(client, "chat.completions", "an openai.OpenAI or AsyncOpenAI client")
    instrument_method(completions, "create", lambda create: wrap_create(create, OPENAI))
    return client
