"""The provider-neutral chat request and response that every provider speaks.

A replay builds one `ChatRequest` from a recorded decision and hands it to whichever
provider the registry names; each provider translates it to and from its own wire format,
so the replay engine and the diff never see a provider's JSON. Field names follow the
ledger's `ledger.records.decision.Model` (and so the OpenTelemetry GenAI conventions), which
keeps the
mapping between a recorded decision and a replayed call one-to-one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call the model asked for; `arguments` is already decoded from JSON."""

    call_id: str
    name: str
    arguments: dict[str, Any] = {}


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One conversation turn.

    An assistant turn that called tools carries `tool_calls`; the answer to one of those
    calls is a ``tool`` turn whose `tool_call_id` names the call it answers.
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None


class ToolDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """A tool offered to the model; `parameters` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = {}


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to ask which model, with the sampling parameters of the recorded call.

    `model` and `version` are the logical names the registry resolves; the provider sees
    the wire name the registry derives from them. `inputs` are the decision's inputs: the
    entry-point provider passes them to its function, HTTP providers ignore them.
    Parameters left as None are not sent, so the server's own default applies, as it did
    when the decision was recorded without them.
    """

    model: str
    version: str | None = None
    messages: list[ChatMessage] = []
    tools: list[ToolDefinition] = []
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] = []
    inputs: dict[str, Any] = {}


class ChatResponse(msgspec.Struct, frozen=True, kw_only=True):
    """One model answer, in the same shape whichever provider gave it.

    `model_version` and `fingerprint` are what the server reported about itself (for
    example the dated snapshot an alias resolved to, and OpenAI's ``system_fingerprint``),
    which can differ from what was asked for: the diff compares them. `latency_ms` is the
    duration of the attempt that succeeded; `attempts` counts every try, retries included.
    `cost` is None when the price table has no price for the model. `decision` is set by
    the entry-point provider, whose function returns a structured decision directly.
    """

    text: str
    tool_calls: list[ToolCall] = []
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    version: str | None = None
    provider: str = ""
    model_version: str | None = None
    fingerprint: str | None = None
    response_id: str | None = None
    latency_ms: int = 0
    first_token_ms: int | None = None
    attempts: int = 1
    cost: Decimal | None = None
    currency: str | None = None
    decision: dict[str, Any] | None = None
