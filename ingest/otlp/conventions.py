"""Reading GenAI spans under each convention they arrive in, to the observed Structs.

Three families of names reach the receiver, often mixed in one trace:

- the OpenTelemetry GenAI semantic conventions (``gen_ai.*``; `gen_ai.input.messages` and
  `gen_ai.output.messages` as JSON with typed ``parts``, `gen_ai.system_instructions`);
- their older forms that current instrumentations still emit: ``gen_ai.system`` for the
  provider, ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``, messages as events
  (``gen_ai.system.message``, ``gen_ai.user.message``, ``gen_ai.assistant.message``,
  ``gen_ai.tool.message``, ``gen_ai.choice``; on the span or sent as log records), and
  indexed attributes (``gen_ai.prompt.0.role``, ``gen_ai.completion.0.content``);
- OpenInference (``openinference.span.kind``, ``llm.*``, ``tool.*``, ``retrieval.*``,
  ``input.value`` / ``output.value``, indexed ``llm.input_messages.0.message.role``).

`kind_of` names what a span did; `model_call`, `tool_run` and `retrieval_run` read it.
Where conventions disagree the newer wins, and a value of the wrong type is ignored rather
than trusted: these are a producer's claims, recorded as such (ledger-attested).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from ingest.calls import values
from ingest.calls.observed import (
    CalledTool,
    ModelCall,
    ObservedMessage,
    RetrievalRun,
    ToolOffered,
    ToolRun,
)
from ingest.otlp.spans import STATUS_ERROR, Span, SpanEvent

SpanKind = Literal["model", "tool", "retrieval", "other"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHAT = {"chat", "text_completion", "generate_content", "completion", "responses"}
_json = msgspec.json.Decoder()


def at(time_ns: int) -> datetime:
    """A span time (Unix nanoseconds) as an aware UTC datetime, to the microsecond."""
    return _EPOCH + timedelta(microseconds=time_ns // 1000)


def kind_of(span: Span) -> SpanKind:
    attrs = span.attributes
    operation = attrs.get("gen_ai.operation.name")
    inference = attrs.get("openinference.span.kind")
    if operation in _CHAT or inference == "LLM":
        return "model"
    if operation == "execute_tool" or inference == "TOOL":
        return "tool"
    if operation == "retrieval" or inference == "RETRIEVER":
        return "retrieval"
    if operation is None and inference is None and "llm.request.type" in attrs:
        return "model"  # OpenLLMetry before it named operations
    return "other"


def decoded(value: Any) -> Any:
    """A JSON string attribute decoded (and each JSON string of an array attribute, as
    some instrumentations send messages), anything else as it is."""
    if isinstance(value, list):
        return [decoded(item) if isinstance(item, str) else item for item in value]
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return _json.decode(value)
        except msgspec.DecodeError:
            return value
    return value


def _object(value: Any) -> dict[str, Any]:
    value = decoded(value)
    return value if isinstance(value, dict) else {}


def first(attrs: dict[str, Any], *names: str) -> Any:
    for name in names:
        if attrs.get(name) is not None:
            return attrs[name]
    return None


def unflatten(attrs: dict[str, Any], prefix: str) -> list[Any]:
    """Indexed attributes (``prefix.0.a.b``, ``prefix.1.a``) as a list of nested dicts;
    numbered levels inside become lists too."""
    tree: dict[str, Any] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix + "."):
            continue
        node = tree
        parts = key[len(prefix) + 1 :].split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    listed = _listed(tree)
    return listed if isinstance(listed, list) else []


def _listed(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _listed(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


# Messages ---------------------------------------------------------------------------------


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(
            part.get("text") or part.get("content") or ""
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text") or part.get("content"), str)
        )
    return "" if value is None else msgspec.json.encode(value).decode()


def _arguments(value: Any) -> dict[str, Any]:
    value = decoded(value)
    return value if isinstance(value, dict) else {}


def _openai_tool_calls(value: Any) -> tuple[CalledTool, ...]:
    """Tool calls in OpenAI's shape (``{id, function: {name, arguments}}``), or flat."""
    calls = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        call = item.get("tool_call", item)  # OpenInference nests one level deeper
        function = call.get("function") if isinstance(call.get("function"), dict) else call
        name = function.get("name")
        if isinstance(name, str):
            calls.append(
                CalledTool(
                    call_id=str(call.get("id") or ""),
                    name=name,
                    arguments=_arguments(function.get("arguments")),
                )
            )
    return tuple(calls)


def _parts_message(message: dict[str, Any]) -> ObservedMessage:
    """A message of the current conventions: a role and typed parts."""
    texts: list[str] = []
    calls: list[CalledTool] = []
    answered: str | None = None
    for part in message.get("parts") or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("content"), str):
            texts.append(part["content"])
        elif kind == "tool_call" and isinstance(part.get("name"), str):
            calls.append(
                CalledTool(
                    call_id=str(part.get("id") or ""),
                    name=part["name"],
                    arguments=_arguments(part.get("arguments")),
                )
            )
        elif kind == "tool_call_response":
            answered = str(part.get("id") or "") or None
            response = part.get("response")
            texts.append(
                response if isinstance(response, str) else msgspec.json.encode(response).decode()
            )
    return ObservedMessage(
        role=str(message.get("role") or "user"),
        content="".join(texts),
        tool_calls=tuple(calls),
        tool_call_id=answered,
    )


def _contents(parts: Any) -> str:
    """OpenInference's typed content parts (``contents.N.message_content.text``)."""
    return "".join(
        part["message_content"].get("text") or ""
        for part in (parts if isinstance(parts, list) else [])
        if isinstance(part, dict)
        and isinstance(part.get("message_content"), dict)
        and isinstance(part["message_content"].get("text") or "", str)
    )


def _plain_message(message: dict[str, Any], role: str | None = None) -> ObservedMessage:
    """A message as providers write it (role, content, tool_calls, tool_call_id)."""
    content = message.get("content")
    return ObservedMessage(
        role=str(message.get("role") or role or "user"),
        content=_content(content) if content is not None else _contents(message.get("contents")),
        tool_calls=_openai_tool_calls(message.get("tool_calls")),
        tool_call_id=values.text(message.get("tool_call_id")) or values.text(message.get("id")),
    )


def _message(message: Any) -> ObservedMessage | None:
    if not isinstance(message, dict):
        return None
    inner = message.get("message", message)  # OpenInference: {message: {...}}
    if not isinstance(inner, dict):
        return None
    if "parts" in inner:
        return _parts_message(inner)
    return _plain_message(inner)


def _messages(items: Any) -> list[ObservedMessage]:
    found = (_message(item) for item in (items if isinstance(items, list) else []))
    return [message for message in found if message is not None]


_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def _event_body(event: SpanEvent) -> dict[str, Any]:
    body = decoded(event.attributes.get("body"))
    if isinstance(body, dict):
        return body
    return {"content": event.attributes.get("gen_ai.event.content") or event.attributes}


def _events_conversation(
    events: Iterable[SpanEvent],
) -> tuple[list[ObservedMessage], list[dict[str, Any]]]:
    """The input messages and the choices that event-based capture recorded."""
    inputs: list[ObservedMessage] = []
    choices: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: e.time_ns):
        role = _EVENT_ROLES.get(event.name)
        body = _event_body(event)
        if role is not None:
            inputs.append(_plain_message(body, role))
        elif event.name == "gen_ai.choice":
            choices.append(body)
    return inputs, choices


# The input messages and the choices that event-based capture recorded.
_Logged = tuple[list[ObservedMessage], list[dict[str, Any]]]


def _input_messages(attrs: dict[str, Any], logged: _Logged) -> list[ObservedMessage] | None:
    messages = _messages(decoded(attrs.get("gen_ai.input.messages")))
    if messages:
        instructions = decoded(attrs.get("gen_ai.system_instructions"))
        if isinstance(instructions, list):
            system = _parts_message({"role": "system", "parts": instructions})
            messages = [system, *messages]
        return messages
    for prefix in ("llm.input_messages", "gen_ai.prompt"):
        messages = _messages(unflatten(attrs, prefix))
        if messages:
            return messages
    return logged[0] or None


def _answer(
    attrs: dict[str, Any], logged: _Logged
) -> tuple[str | None, tuple[CalledTool, ...], str | None]:
    """The first choice's text, tool calls and finish reason."""
    outputs = decoded(attrs.get("gen_ai.output.messages"))
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
        message = _parts_message(outputs[0])
        reason = values.text(outputs[0].get("finish_reason"))
        return message.content, message.tool_calls, reason
    for prefix in ("llm.output_messages", "gen_ai.completion"):
        listed = unflatten(attrs, prefix)
        if listed and isinstance(listed[0], dict):
            found = _message(listed[0])
            if found is not None:
                reason = values.text(listed[0].get("finish_reason"))
                return found.content, found.tool_calls, reason
    choices = logged[1]
    if choices:
        choice = choices[0]
        said = choice.get("message")
        found = _plain_message(said if isinstance(said, dict) else {}, "assistant")
        return found.content, found.tool_calls, values.text(choice.get("finish_reason"))
    return None, (), None


def _offered(attrs: dict[str, Any]) -> tuple[ToolOffered, ...]:
    definitions = decoded(attrs.get("gen_ai.tool.definitions"))
    if not isinstance(definitions, list):
        definitions = [
            decoded(item.get("tool", {}).get("json_schema")) if isinstance(item, dict) else None
            for item in unflatten(attrs, "llm.tools")
        ]
    offered = []
    for item in definitions:
        if not isinstance(item, dict):
            continue
        function: dict[str, Any] = item.get("function") or item
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            # OpenAI names the schema `parameters`, Anthropic `input_schema`.
            parameters = function.get("parameters", function.get("input_schema"))
            offered.append(
                ToolOffered(
                    name=name,
                    description=values.text(function.get("description")),
                    parameters=parameters if isinstance(parameters, dict) else None,
                )
            )
    return tuple(offered)


def _error(span: Span) -> tuple[str | None, str | None]:
    if span.status_code != STATUS_ERROR:
        return None, None
    kind = values.text(span.attributes.get("error.type")) or "error"
    return kind, span.status_message or kind


def _finish_reason(attrs: dict[str, Any]) -> str | None:
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        return reasons[0]
    return values.text(attrs.get("llm.finish_reason"))


def _parameter(attrs: dict[str, Any], name: str, parameters: dict[str, Any], key: str) -> Any:
    """A request parameter from its span attribute, else from OpenInference's JSON of them."""
    return attrs[name] if name in attrs else parameters.get(key)


def model_call(span: Span, events: list[SpanEvent]) -> ModelCall:
    """A model span (`kind_of` says ``model``) as the call it recorded."""
    attrs = span.attributes
    parameters = _object(attrs.get("llm.invocation_parameters"))
    # Read once for both: the events are where older instrumentations put the messages.
    logged = _events_conversation(events)
    text, tool_calls, reason = _answer(attrs, logged)
    messages = _input_messages(attrs, logged)
    stops = _parameter(attrs, "gen_ai.request.stop_sequences", parameters, "stop") or []
    error_type, error_message = _error(span)
    response_model = values.text(first(attrs, "gen_ai.response.model", "llm.model_name"))
    return ModelCall(
        provider=values.text(
            first(attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
        )
        or "unknown",
        request_model=values.text(
            first(attrs, "gen_ai.request.model", "llm.request.model") or parameters.get("model")
        )
        or response_model
        or "unknown",
        response_model=response_model,
        fingerprint=values.text(
            first(
                attrs,
                "gen_ai.openai.response.system_fingerprint",
                "openai.response.system_fingerprint",
            )
        ),
        temperature=values.number(
            _parameter(attrs, "gen_ai.request.temperature", parameters, "temperature")
        ),
        top_p=values.number(_parameter(attrs, "gen_ai.request.top_p", parameters, "top_p")),
        top_k=values.integer(_parameter(attrs, "gen_ai.request.top_k", parameters, "top_k")),
        seed=values.integer(
            _parameter(attrs, "gen_ai.request.seed", parameters, "seed")
            if "gen_ai.openai.request.seed" not in attrs
            else attrs["gen_ai.openai.request.seed"]
        ),
        max_tokens=values.integer(
            _parameter(attrs, "gen_ai.request.max_tokens", parameters, "max_tokens")
        ),
        stop_sequences=tuple(s for s in stops if isinstance(s, str))
        if isinstance(stops, list)
        else (),
        tools=_offered(attrs),
        messages=tuple(messages) if messages is not None else None,
        text=text,
        tool_calls=tool_calls,
        finish_reason=reason or _finish_reason(attrs),
        response_id=values.text(first(attrs, "gen_ai.response.id")),
        input_tokens=values.integer(
            first(
                attrs,
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.prompt_tokens",
                "llm.token_count.prompt",
            )
        ),
        output_tokens=values.integer(
            first(
                attrs,
                "gen_ai.usage.output_tokens",
                "gen_ai.usage.completion_tokens",
                "llm.token_count.completion",
            )
        ),
        cache_read_input_tokens=values.integer(
            first(
                attrs,
                "gen_ai.usage.cache_read.input_tokens",
                "llm.token_count.prompt_details.cache_read",
            )
        ),
        reasoning_output_tokens=values.integer(
            first(
                attrs,
                "gen_ai.usage.reasoning.output_tokens",
                "llm.token_count.completion_details.reasoning",
            )
        ),
        started_at=at(span.start_ns),
        ended_at=at(span.end_ns),
        error_type=error_type,
        error_message=error_message,
    )


def tool_run(span: Span) -> ToolRun:
    """A tool span as the run it recorded."""
    attrs = span.attributes
    error_type, error_message = _error(span)
    return ToolRun(
        name=values.text(first(attrs, "gen_ai.tool.name", "tool.name")) or span.name,
        call_id=values.text(first(attrs, "gen_ai.tool.call.id", "tool_call.id")),
        arguments=_arguments(
            first(attrs, "gen_ai.tool.call.arguments", "tool.parameters", "input.value")
        ),
        result=decoded(first(attrs, "gen_ai.tool.call.result", "output.value")),
        started_at=at(span.start_ns),
        ended_at=at(span.end_ns),
        error_type=error_type,
        error_message=error_message,
    )


def retrieval_run(span: Span) -> RetrievalRun:
    """A retrieval span as the retrieval it recorded."""
    attrs = span.attributes
    documents = decoded(attrs.get("gen_ai.retrieval.documents"))
    if documents is None:
        documents = [
            item.get("document", item)
            for item in unflatten(attrs, "retrieval.documents")
            if isinstance(item, dict)
        ]
    error_type, error_message = _error(span)
    return RetrievalRun(
        source=values.text(first(attrs, "gen_ai.data_source.id")) or span.name,
        query=decoded(first(attrs, "gen_ai.retrieval.query.text", "input.value")),
        documents=documents or None,
        started_at=at(span.start_ns),
        ended_at=at(span.end_ns),
        error_type=error_type,
        error_message=error_message,
    )
