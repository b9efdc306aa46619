"""Recorded decisions crafted for replay tests, and a replay against a local model server.

No real model provider is reachable here: `tests.model_servers.ModelServer` speaks the
OpenAI and Anthropic wire formats as a deterministic model. Offered tools, it first calls
the first one with arguments derived from the tool's JSON schema (a string parameter gets
the last user message), then answers in text quoting the tool result; `recorded_text`
computes that text, so a test can write the record a model version would have produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from ledger.records.decision import (
    Decision,
    LlmCall,
    Message,
    Model,
    Output,
    Prompt,
    Retrieval,
    Step,
    StepError,
    ToolCall,
    ToolDefinition,
    Usage,
    decode_decision,
    encode_decision,
)
from ledger.records.replay import ReplayRecord, decode_replay, encode_replay
from replay.engine.engine import ReplayPlan, replay_decision
from replay.engine.tools import ToolHandlers
from replay.providers import ProviderPool, Registry, parse_registry
from tests.model_servers import API_KEY, ENV, Conversation, ModelServer, answer, registry_toml

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
SYSTEM = "You score loan applications."
USER = "applicant A-17 asks for 12000"
LEAF = bytes(range(32))
REPLAYED_AT = T0 + timedelta(days=30)
_APPLICANT = {"type": "object", "properties": {"applicant": {"type": "string"}}}
LOOKUP = ToolDefinition(name="lookup", description="Credit file", parameters=_APPLICANT)
HISTORY = ToolDefinition(name="fetch_history", description="Past loans", parameters=_APPLICANT)
# What the server's model passes to either tool: the last user message.
ASKED = {"applicant": USER}


@pytest.fixture(scope="module")
def model_server() -> Iterator[ModelServer]:
    """One local model server for each test module that binds these fixtures; tests take
    `srv`, which clears the server's script and the requests it saw before each test."""
    with ModelServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def srv(model_server: ModelServer) -> ModelServer:
    model_server.reset()
    return model_server


def compact(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def recorded_text(wire_model: str, *tool_results: Any) -> str:
    """The server model's final text after the given tool results (none: a plain answer)."""
    conversation = Conversation(
        texts=[],
        last_user=USER,
        tools=[],
        tool_results=[compact(result) for result in tool_results],
        ends_with_tool_result=bool(tool_results),
    )
    return answer(wire_model, conversation).text


class Steps:
    """Builds a run's steps one after another from `T0`."""

    def __init__(self) -> None:
        self.now = T0
        self.steps: list[Step] = []

    def _span(self, ms: int) -> tuple[datetime, datetime]:
        started = self.now
        self.now = started + timedelta(milliseconds=ms)
        return started, self.now

    def retrieval(self) -> Steps:
        started, ended = self._span(20)
        self.steps.append(
            Retrieval(started_at=started, ended_at=ended, source="kb.policy", outputs=["p/1"])
        )
        return self

    def llm(self, text: str | None = None, *, tokens: tuple[int, int] = (40, 8)) -> Steps:
        started, ended = self._span(300)
        self.steps.append(
            LlmCall(
                started_at=started,
                ended_at=ended,
                outputs={"text": text} if text is not None else None,
                usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1], latency_ms=300),
                finish_reason="stop" if text is not None else "tool_calls",
            )
        )
        return self

    def tool(
        self,
        name: str,
        arguments: Mapping[str, Any],
        result: Any = None,
        *,
        error: StepError | None = None,
    ) -> Steps:
        started, ended = self._span(50)
        self.steps.append(
            ToolCall(
                started_at=started,
                ended_at=ended,
                name=name,
                call_id=f"call_recorded_{len(self.steps)}",
                arguments=dict(arguments),
                result=result,
                error=error,
            )
        )
        return self


def decision(
    steps: Steps | Sequence[Step],
    *,
    decided: dict[str, Any],
    text: str | None,
    name: str = "scorer",
    version: str = "v1",
    provider: str = "openai",
    tools: Sequence[ToolDefinition] = (LOOKUP, HISTORY),
    messages_blob: str | None = None,
    inputs: dict[str, Any] | None = None,
    usage: Usage | None = None,
    **sampling: Any,
) -> Decision:
    """A recorded decision, checked the way the ledger decodes it."""
    made = Decision(
        id="dec-0001",
        tenant="acme",
        service="loan-underwriter",
        decision_type="loan.approve",
        occurred_at=T0,
        inputs=inputs if inputs is not None else {"application_id": "LA-17"},
        prompt=Prompt(
            template_id="loan-assessment",
            version="1.0.0",
            digest="sha256:" + "0" * 64,
            messages=None
            if messages_blob
            else [Message(role="system", content=SYSTEM), Message(role="user", content=USER)],
            messages_blob=messages_blob,
        ),
        model=Model(provider=provider, name=name, version=version, tools=list(tools), **sampling),
        steps=steps.steps if isinstance(steps, Steps) else list(steps),
        output=Output(decision=decided, text=text, finish_reason="stop"),
        usage=usage,
    )
    return decode_decision(encode_decision(made))


def registry(server: ModelServer, **settings: Any) -> Registry:
    return parse_registry(registry_toml(server, **settings), source="test-registry.toml")


def checked(record: ReplayRecord) -> ReplayRecord:
    """The record as the ledger would read it back: every constraint of the schema holds."""
    assert decode_replay(encode_replay(record)) == record
    return record


def no_blobs(digest: str) -> bytes | None:
    raise AssertionError(f"the replay asked for blob {digest}")


def replay(
    recorded: Decision,
    plan: ReplayPlan,
    *,
    server: ModelServer | None = None,
    settings: Mapping[str, Any] | None = None,
    tools: ToolHandlers | None = None,
    blobs: Callable[[str], bytes | None] = no_blobs,
) -> ReplayRecord:
    """Replay `recorded` with a pool over `server` (no pool without one)."""

    async def go() -> ReplayRecord:
        if server is None:
            return await replay_with(None, recorded, plan, tools=tools, blobs=blobs)
        async with ProviderPool(registry(server, **(settings or {})), env=ENV) as pool:
            return await replay_with(pool, recorded, plan, tools=tools, blobs=blobs)

    return checked(asyncio.run(go()))


async def replay_with(
    pool: ProviderPool | None,
    recorded: Decision,
    plan: ReplayPlan,
    *,
    tools: ToolHandlers | None = None,
    blobs: Callable[[str], bytes | None] = no_blobs,
) -> ReplayRecord:
    return await replay_decision(
        recorded,
        leaf_hash=LEAF,
        plan=plan,
        pool=pool,
        blobs=blobs,
        tools=tools,
        record_id="replay-0001",
        now=lambda: REPLAYED_AT,
    )
