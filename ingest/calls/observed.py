"""What a producer observed of one decision's run: model calls, tool runs, retrievals.

These are plain Structs with no opinion on where they came from. A `ModelCall` holds the
conversation as sent (`messages`, None when the producer did not capture content), the
answer (`text`, the tool calls it asked for), the model and its sampling parameters, and
usage; times are timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class CalledTool(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call the model asked for in its answer."""

    call_id: str
    name: str
    arguments: dict[str, Any] = {}


class ObservedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of a conversation as sent to a model."""

    role: str  # system, user, assistant or tool (others are read as user)
    content: str = ""
    tool_calls: tuple[CalledTool, ...] = ()
    tool_call_id: str | None = None


class ToolOffered(msgspec.Struct, frozen=True, kw_only=True):
    """A tool offered to the model; `parameters` is its JSON Schema."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ModelCall(msgspec.Struct, frozen=True, kw_only=True):
    """One call to a model and its answer."""

    provider: str
    request_model: str
    response_model: str | None = None
    fingerprint: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop_sequences: tuple[str, ...] = ()
    tools: tuple[ToolOffered, ...] = ()
    # None: the producer did not capture message content (so the call cannot be replayed).
    messages: tuple[ObservedMessage, ...] | None = None
    text: str | None = None
    tool_calls: tuple[CalledTool, ...] = ()
    finish_reason: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None
    started_at: datetime
    ended_at: datetime
    error_type: str | None = None
    error_message: str | None = None
    # The exact request and response, when the producer saw them (the SDK does).
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


class ToolRun(msgspec.Struct, frozen=True, kw_only=True):
    """A tool the service ran; `call_id` links it to the model's request for it."""

    name: str
    call_id: str | None = None
    arguments: dict[str, Any] = {}
    result: Any = None
    started_at: datetime
    ended_at: datetime
    error_type: str | None = None
    error_message: str | None = None


class RetrievalRun(msgspec.Struct, frozen=True, kw_only=True):
    """A retrieval the service ran (a vector search, say) and what it returned."""

    source: str
    query: Any = None
    documents: Any = None
    started_at: datetime
    ended_at: datetime
    error_type: str | None = None
    error_message: str | None = None
