"""A recorded run as the model saw it: its LLM calls, their answers, and their requests.

The convention every part of replay relies on (docs/replay.md, "Request rebuilding"):

- the initial messages are `decision.prompt.messages`, or the JSON array of
  ``{role, content}`` stored as the blob `decision.prompt.messages_blob`;
- the request of the k-th recorded LLM call is the initial messages, then for each earlier
  LLM call j an assistant turn (its text, carrying as tool calls the ToolCall steps that
  follow it up to the next LLM call) and one ``tool`` turn per such call, whose content is
  the compact JSON of its result, or ``{"error": {"type", "message"}}``;
- tools, sampling parameters and `inputs` come from the decision.

The text of an LLM call is ``outputs["text"]`` when the step has one; the last LLM call's
text is the decision's `output.text`. ToolCall steps before the first LLM call were made
by the service, not asked for by the model: like retrievals, policy checks and human
approvals they are kept from the record and never fed to or expected from a model. A
record with no LLM call at all (a rules engine, say) is one implicit call whose answer is
its output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from ledger.blobs.salted import content_of
from ledger.errors import ProvError
from ledger.records._pointer import explain
from ledger.records.decision import Decision, LlmCall, Message, StepError, ToolCall, Usage
from replay.providers import ChatMessage, ChatRequest, ToolDefinition
from replay.providers import ToolCall as RequestedToolCall

Blobs = Callable[[str], bytes | None]

_messages = msgspec.json.Decoder(list[Message])
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class RecordedTool:
    """A tool call a recorded LLM call asked for; `step` is its index in `steps`."""

    step: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One recorded LLM call and its answer; `step` is None for the implicit call of a
    record without LLM calls."""

    step: int | None
    text: str
    finish_reason: str | None
    response_id: str | None
    usage: Usage | None
    latency_ms: int
    tools: tuple[RecordedTool, ...]


@dataclass(frozen=True, slots=True)
class RecordedRun:
    calls: tuple[RecordedCall, ...]
    tools: tuple[RecordedTool, ...]  # every call's tools, in order: what a replay expects


def _step_text(step: LlmCall) -> str:
    outputs = step.outputs
    if isinstance(outputs, dict):
        text = outputs.get("text")
        if isinstance(text, str):
            return text
    return ""


def _call(
    index: int | None, step: LlmCall | None, text: str, tools: list[RecordedTool]
) -> RecordedCall:
    if step is None:
        return RecordedCall(None, text, None, None, None, 0, ())
    latency = step.usage.latency_ms if step.usage else None
    if latency is None:
        latency = round((step.ended_at - step.started_at).total_seconds() * 1000)
    return RecordedCall(
        index, text, step.finish_reason, step.response_id, step.usage, latency, tuple(tools)
    )


def recorded_run(decision: Decision) -> RecordedRun:
    """The decision's LLM calls with the tool calls each asked for, in one pass."""
    calls: list[tuple[int, LlmCall, list[RecordedTool]]] = []
    for index, step in enumerate(decision.steps):
        if isinstance(step, LlmCall):
            calls.append((index, step, []))
        elif isinstance(step, ToolCall) and calls:
            calls[-1][2].append(RecordedTool(index, step))
    final_text = decision.output.text
    if not calls:
        return RecordedRun((_call(None, None, final_text or "", []),), ())
    built = [_call(index, step, _step_text(step), tools) for index, step, tools in calls[:-1]]
    index, step, tools = calls[-1]
    built.append(_call(index, step, _step_text(step) if final_text is None else final_text, tools))
    return RecordedRun(tuple(built), tuple(tool for call in built for tool in call.tools))


class BlobUnavailable(ProvError):
    """A blob the request needs is missing, erased, or not what its digest says."""

    kind = "blob-unavailable"
    title = "Blob unavailable for replay"

    def __init__(self, error: StepError) -> None:
        super().__init__(error.message)
        self.error = error


def initial_messages(decision: Decision, blobs: Blobs) -> list[ChatMessage]:
    """The prompt's messages, read from their blob when the record references one.

    Raises `BlobUnavailable` when the blob is gone or its bytes do not match its digest
    or are not a JSON array of ``{role, content}``.
    """
    prompt = decision.prompt
    if prompt is None:
        return []
    messages = prompt.messages
    if messages is None:
        digest = prompt.messages_blob
        assert digest is not None  # the schema requires one of the two
        data = blobs(digest)
        if data is None:
            raise BlobUnavailable(
                StepError(
                    type="blob_missing",
                    message=f"the prompt messages blob {digest} is missing or erased",
                )
            )
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise BlobUnavailable(
                StepError(
                    type="blob_invalid",
                    message=f"the prompt messages blob {digest} does not match its digest",
                )
            )
        try:
            messages = _messages.decode(content_of(data))  # a salted blob: past its salt
        except msgspec.DecodeError as error:
            raise BlobUnavailable(
                StepError(
                    type="blob_invalid",
                    message=f"the prompt messages blob {digest} is not a JSON array of "
                    f"{{role, content}}: {error}",
                )
            ) from error
    return [ChatMessage(role=message.role, content=message.content) for message in messages]


def base_request(decision: Decision, messages: list[ChatMessage]) -> ChatRequest:
    """The first request of the recorded run: its model, tools, parameters and inputs."""
    model = decision.model
    return ChatRequest(
        model=model.name,
        version=model.version,
        messages=messages,
        tools=[
            ToolDefinition(name=t.name, description=t.description, parameters=t.parameters or {})
            for t in model.tools
        ],
        temperature=model.temperature,
        top_p=model.top_p,
        top_k=model.top_k,
        seed=model.seed,
        max_tokens=model.max_tokens,
        stop_sequences=list(model.stop_sequences),
        inputs=decision.inputs,
    )


def assistant_turn(text: str, calls: Sequence[RequestedToolCall]) -> ChatMessage:
    return ChatMessage(role="assistant", content=text, tool_calls=list(calls))


def tool_turn(call_id: str, result: Any, error: StepError | None) -> ChatMessage:
    """The answer to one tool call, as the model reads it: compact JSON."""
    body = {"error": {"type": error.type, "message": error.message}} if error else result
    return ChatMessage(role="tool", content=_json.encode(body).decode(), tool_call_id=call_id)


def requested(tool: RecordedTool) -> RequestedToolCall:
    """A recorded tool call as the model asked for it."""
    call = tool.call
    return RequestedToolCall(call_id=call.call_id, name=call.name, arguments=call.arguments)


def recorded_requests(decision: Decision, blobs: Blobs) -> list[ChatRequest]:
    """The request of every recorded LLM call, rebuilt by the convention above."""
    base = base_request(decision, initial_messages(decision, blobs))
    messages = list(base.messages)
    requests = []
    for call in recorded_run(decision).calls:
        requests.append(msgspec.structs.replace(base, messages=list(messages)))
        messages.append(assistant_turn(call.text, [requested(tool) for tool in call.tools]))
        messages += [
            tool_turn(tool.call.call_id, tool.call.result, tool.call.error) for tool in call.tools
        ]
    return requests


# Sampling parameters ---------------------------------------------------------------------

SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k", "seed", "max_tokens", "stop_sequences")


class Sampling(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Overrides of a request's sampling parameters; None means "not sent"."""

    temperature: Annotated[float, Meta(ge=0)] | msgspec.UnsetType | None = msgspec.UNSET
    top_p: Annotated[float, Meta(ge=0, le=1)] | msgspec.UnsetType | None = msgspec.UNSET
    top_k: Annotated[int, Meta(ge=1)] | msgspec.UnsetType | None = msgspec.UNSET
    seed: int | msgspec.UnsetType | None = msgspec.UNSET
    max_tokens: Annotated[int, Meta(ge=1)] | msgspec.UnsetType | None = msgspec.UNSET
    stop_sequences: list[str] | msgspec.UnsetType | None = msgspec.UNSET


def parse_sampling(parameters: dict[str, Any]) -> Sampling:
    """Check overrides; raises `ValueError` naming the parameter at fault."""
    try:
        return msgspec.convert(parameters, type=Sampling)
    except msgspec.ValidationError as error:
        detail, pointer = explain(error)
        if not pointer:  # an unknown name
            detail += f" (known: {', '.join(SAMPLING_PARAMETERS)})"
        raise ValueError(f"parameters{pointer}: {detail}") from None


def with_sampling(request: ChatRequest, sampling: Sampling) -> ChatRequest:
    changes = {
        name: value
        for name in SAMPLING_PARAMETERS
        if (value := getattr(sampling, name)) is not msgspec.UNSET
    }
    if "stop_sequences" in changes and changes["stop_sequences"] is None:
        changes["stop_sequences"] = []
    return msgspec.structs.replace(request, **changes) if changes else request


def parameters_of(request: ChatRequest) -> dict[str, Any]:
    """The sampling parameters a request sends (those set), for `ModelRef.parameters`."""
    sent: dict[str, Any] = {}
    for name in SAMPLING_PARAMETERS:
        value = getattr(request, name)
        if value is not None and value != []:
            sent[name] = value
    return sent
