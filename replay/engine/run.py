"""The replayed run: model calls, tool feeding, and the first point of divergence.

One loop serves every mode; only where the answers come from differs. `RecordedAnswers`
gives back the recorded LLM responses (deterministic), `PooledAnswers` asks a model through
the provider pool (pinned, counterfactual). While the model asks for tools, each call is
matched by position against the record's sequence of tool calls:

- it matches (same name, same arguments): the recorded result is fed back under the new
  call id, unless a live handler is registered for the tool, which then answers;
- it departs: the first departure is the divergence (`other_tool`, `other_arguments`, or
  `ended_late` when the record had no more calls). A live handler for the tool keeps the
  run going; without one the run stops there.

A model that stops while the record had more tool calls `ended_early`. Model calls are
bounded (the record's LLM and tool calls plus `EXTRA_MODEL_CALLS`), so a model that keeps
asking for tools is stopped; since every call past the record departs from it, such a run
has always diverged by then. Provider failures end the run with an error, never an
exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from ledger.records.decision import Cost, Model, StepError, Usage
from ledger.records.replay import (
    Divergence,
    DivergenceKind,
    ReplayedLlmCall,
    ReplayedStep,
    ReplayedToolCall,
    ReplayedToolCallRequest,
    ToolSource,
)
from replay.engine.diff import same
from replay.engine.requests import (
    RecordedRun,
    RecordedTool,
    assistant_turn,
    requested,
    tool_turn,
)
from replay.engine.tools import ToolHandlers, ToolOutcome, recorded_outcome
from replay.providers import ChatMessage, ChatRequest, ChatResponse, ProviderError, ProviderPool
from replay.providers import ToolCall as RequestedToolCall

# Model calls a replay may make beyond the record's LLM and tool calls together.
EXTRA_MODEL_CALLS = 3


class Conversation:
    """The messages of the replayed run so far, built only when a model reads them, so a
    deterministic replay never encodes a tool result."""

    def __init__(self, initial: list[ChatMessage]) -> None:
        self._messages = initial
        self._pending: list[tuple[ChatResponse, list[tuple[str, ToolOutcome]]]] = []

    def add(self, response: ChatResponse, fed: list[tuple[str, ToolOutcome]]) -> None:
        """One model answer that asked for tools, and what each call id was fed."""
        self._pending.append((response, fed))

    def messages(self) -> list[ChatMessage]:
        for response, fed in self._pending:
            self._messages.append(assistant_turn(response.text, response.tool_calls))
            self._messages += [
                tool_turn(call_id, outcome.result, outcome.error) for call_id, outcome in fed
            ]
        self._pending.clear()
        return list(self._messages)


class Answers(Protocol):
    """Where a replayed run's model answers come from."""

    async def answer(self, index: int, conversation: Conversation) -> ChatResponse | None:
        """The answer to the run's `index`-th model call; None when there is none (the
        record ended after tool calls)."""


class RecordedAnswers:
    """The recorded LLM responses, as the model's answers (deterministic replay)."""

    def __init__(self, run: RecordedRun, model: Model) -> None:
        self._run = run
        self._model = model

    async def answer(self, index: int, conversation: Conversation) -> ChatResponse | None:
        if index >= len(self._run.calls):
            return None
        call = self._run.calls[index]
        usage = call.usage
        cost = usage.cost if usage else None
        return ChatResponse(
            text=call.text,
            tool_calls=[requested(tool) for tool in call.tools],
            finish_reason=call.finish_reason,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            model=self._model.name,
            version=self._model.version,
            provider=self._model.provider,
            model_version=self._model.version,
            fingerprint=self._model.fingerprint,
            response_id=call.response_id,
            latency_ms=call.latency_ms,
            cost=cost.amount if cost else None,
            currency=cost.currency if cost else None,
        )


class PooledAnswers:
    """A model's answers through the provider pool (pinned and counterfactual replay)."""

    def __init__(self, pool: ProviderPool, request: ChatRequest, *, stream: bool) -> None:
        self._pool = pool
        self._request = request
        self._stream = stream

    async def answer(self, index: int, conversation: Conversation) -> ChatResponse:
        request = msgspec.structs.replace(self._request, messages=conversation.messages())
        return await self._pool.complete(request, stream=self._stream)


@dataclass(slots=True)
class RunResult:
    """What a replayed run did. `final` is its last answer when it reached its end (the
    model stopped asking for tools); None when it stopped at a divergence or failed."""

    steps: list[ReplayedStep] = field(default_factory=list)
    # Every tool call the replayed model asked for, in order, answered or not.
    asked: list[ReplayedToolCallRequest] = field(default_factory=list)
    responses: list[ChatResponse] = field(default_factory=list)
    divergence: Divergence | None = None
    error: StepError | None = None
    final: ChatResponse | None = None

    def usage(self) -> Usage | None:
        """The sum of the run's model calls: tokens, cost (when every call was priced in
        one currency) and latency."""
        if not self.responses:
            return None
        currencies = {r.currency for r in self.responses}
        cost = None
        if len(currencies) == 1 and None not in currencies:
            [currency] = currencies
            amount = sum((r.cost for r in self.responses if r.cost is not None), Decimal(0))
            cost = Cost(amount=amount, currency=str(currency))
        return Usage(
            input_tokens=sum(r.input_tokens for r in self.responses),
            output_tokens=sum(r.output_tokens for r in self.responses),
            cost=cost,
            latency_ms=sum(r.latency_ms for r in self.responses),
        )


def asked(call: RequestedToolCall) -> ReplayedToolCallRequest:
    """A tool call as the replay record keeps it."""
    return ReplayedToolCallRequest(call_id=call.call_id, name=call.name, arguments=call.arguments)


def error_type(error: ProviderError) -> str:
    """``ProviderTimeout`` -> ``provider_timeout``: the error's kind, for `StepError.type`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def _shape(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


class _Run:
    def __init__(
        self,
        recorded: RecordedRun,
        recorded_steps: int,
        handlers: ToolHandlers | None,
    ) -> None:
        self.expected: Sequence[RecordedTool] = recorded.tools
        self.recorded_calls = recorded.calls
        self.recorded_steps = recorded_steps
        self.handlers = handlers
        self.position = 0  # the next recorded tool call to match
        self.result = RunResult()

    def diverge(
        self,
        kind: DivergenceKind,
        detail: str,
        *,
        recorded_step: int,
        replayed_step: int,
        expected: Any = None,
        actual: Any = None,
    ) -> None:
        if self.result.divergence is None:  # only the first point of departure counts
            self.result.divergence = Divergence(
                kind=kind,
                recorded_step=recorded_step,
                replayed_step=replayed_step,
                expected=expected,
                actual=actual,
                detail=detail,
            )

    def add_answer(self, index: int, response: ChatResponse) -> int:
        recorded = self.recorded_calls[index] if index < len(self.recorded_calls) else None
        calls = [asked(call) for call in response.tool_calls]
        self.result.asked += calls
        self.result.responses.append(response)
        self.result.steps.append(
            ReplayedLlmCall(
                recorded_step=recorded.step if recorded else None,
                text=response.text,
                tool_calls=calls,
                finish_reason=response.finish_reason,
                input_tokens=response.input_tokens,
                output_tokens=response.output_tokens,
                cost=response.cost,
                latency_ms=response.latency_ms,
                response_id=response.response_id,
                model_version=response.model_version,
                fingerprint=response.fingerprint,
            )
        )
        return len(self.result.steps) - 1

    def end(self, response: ChatResponse, llm_step: int) -> None:
        """The model stopped asking for tools: the run reached its end."""
        if self.position < len(self.expected):
            missed = self.expected[self.position]
            self.diverge(
                "ended_early",
                f"the replay ended where the record went on to call {missed.call.name!r} "
                f"(step {missed.step})",
                recorded_step=missed.step,
                replayed_step=llm_step,
                expected=_shape(missed.call.name, missed.call.arguments),
            )
        self.result.final = response

    def match(self, call: RequestedToolCall, llm_step: int) -> RecordedTool | None:
        """The recorded call `call` matches at its position; None when it departs from the
        record (the first departure is the divergence)."""
        if self.position == len(self.expected):
            self.diverge(
                "ended_late",
                f"the replay called {call.name!r} after the record had finished",
                recorded_step=self.recorded_steps,
                replayed_step=llm_step,
                actual=_shape(call.name, call.arguments),
            )
            return None
        expected = self.expected[self.position]
        self.position += 1  # calls are compared by position, matching or not
        recorded = expected.call
        if recorded.name != call.name:
            kind: DivergenceKind = "other_tool"
            detail = f"the replay called {call.name!r} where the record called {recorded.name!r}"
        elif not same(recorded.arguments, call.arguments):
            kind = "other_arguments"
            detail = f"the replay called {call.name!r} with other arguments than the record"
        else:
            return expected
        self.diverge(
            kind,
            f"{detail} (step {expected.step})",
            recorded_step=expected.step,
            replayed_step=llm_step,
            expected=_shape(recorded.name, recorded.arguments),
            actual=_shape(call.name, call.arguments),
        )
        return None

    async def feed(
        self, response: ChatResponse, llm_step: int
    ) -> list[tuple[str, ToolOutcome]] | None:
        """Answer each tool call of `response`; None when one has no answer (the run stops)."""
        fed: list[tuple[str, ToolOutcome]] = []
        for call in response.tool_calls:
            matched = self.match(call, llm_step)
            source: ToolSource
            if self.handlers is not None and call.name in self.handlers:
                outcome = await self.handlers.call(call.name, call.arguments)
                source = "live"
            elif matched is not None:
                outcome = recorded_outcome(matched)
                source = "recorded"
            else:
                return None
            self.result.steps.append(
                ReplayedToolCall(
                    recorded_step=matched.step if matched else None,
                    call_id=call.call_id,
                    name=call.name,
                    arguments=call.arguments,
                    result=outcome.result,
                    error=outcome.error,
                    source=source,
                )
            )
            fed.append((call.call_id, outcome))
        return fed


async def run_replay(
    recorded: RecordedRun,
    answers: Answers,
    conversation: Conversation,
    *,
    recorded_steps: int,
    handlers: ToolHandlers | None,
) -> RunResult:
    """Replay the run: ask `answers` while the model asks for tools, feeding tool results
    and flagging the first divergence. `recorded_steps` is the length of the decision's
    `steps` (where an `ended_late` divergence points)."""
    run = _Run(recorded, recorded_steps, handlers)
    max_calls = len(recorded.calls) + len(recorded.tools) + EXTRA_MODEL_CALLS
    last: ChatResponse | None = None
    for index in range(max_calls):
        try:
            response = await answers.answer(index, conversation)
        except ProviderError as error:
            run.result.error = StepError(type=error_type(error), message=str(error))
            return run.result
        if response is None:
            run.result.final = last  # the record ended after its last tool calls
            return run.result
        last = response
        llm_step = run.add_answer(index, response)
        if not response.tool_calls:
            run.end(response, llm_step)
            return run.result
        fed = await run.feed(response, llm_step)
        if fed is None:
            return run.result
        conversation.add(response, fed)
    # Only a run that left the record can get here: each call within it uses up a
    # recorded tool call, and there are fewer of those than the bound.
    divergence = run.result.divergence
    assert divergence is not None
    run.result.divergence = msgspec.structs.replace(
        divergence, detail=f"{divergence.detail}; stopped after {max_calls} model calls"
    )
    return run.result
