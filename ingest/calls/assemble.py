"""Observed model calls, tool runs and retrievals, assembled into a decision's members.

The steps follow docs/replay.md, "Request rebuilding", so that the decision replays: the
prompt is the first call's conversation; each model call is an `LlmCall` step whose
``outputs["text"]`` is its answer, followed by one `ToolCall` step per tool call it asked
for. A tool call's result is the service's own run of it when one was observed with the
same call id (an ``execute_tool`` span, `Decision.tool`), else the ``tool`` turn answering
it in the next call's conversation. Tool runs no call asked for and retrievals become steps
in time order. The decision's text is the last call's answer and its structured decision
is the JSON that text states (`ledger.records.decision_text`), unless the producer gives
one.

A call without captured messages leaves the run unreplayable; `Assembled.not_replayable`
says which call and why, and replay refuses such a decision with that reason
(`ledger.records.decision.NOT_REPLAYABLE_ATTRIBUTE`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from ingest.calls.observed import ModelCall, ObservedMessage, RetrievalRun, ToolRun
from ledger.records.decision import (
    LlmCall,
    Message,
    Model,
    Prompt,
    Retrieval,
    Step,
    StepError,
    ToolCall,
    ToolDefinition,
    Usage,
)
from ledger.records.decision_text import decision_from_text

# A decision with no model call at all still names a model (the schema requires one).
NO_MODEL = Model(provider="none", name="none", version="none")

_ROLES = {"system", "user", "assistant", "tool"}
_json = msgspec.json.Encoder(order="sorted")
_any = msgspec.json.Decoder()


class Assembled(msgspec.Struct, frozen=True, kw_only=True):
    """The members of a decision that observed calls determine."""

    model: Model
    prompt: Prompt | None
    steps: list[Step]
    usage: Usage | None
    text: str | None
    finish_reason: str | None
    decision: dict[str, Any]
    not_replayable: str | None


def _message(observed: ObservedMessage) -> Message:
    role = observed.role if observed.role in _ROLES else "user"
    return Message(role=role, content=observed.content)  # type: ignore[arg-type]


def _prompt(call: ModelCall, template_id: str) -> Prompt | None:
    if call.messages is None:
        return None
    messages = [_message(message) for message in call.messages]
    digest = hashlib.sha256(_json.encode(messages)).hexdigest()
    return Prompt(
        template_id=template_id, version="captured", digest="sha256:" + digest, messages=messages
    )


def _model(call: ModelCall) -> Model:
    return Model(
        provider=call.provider or "unknown",
        name=call.request_model or call.response_model or "unknown",
        version=call.response_model or call.request_model or "unknown",
        fingerprint=call.fingerprint,
        temperature=call.temperature,
        top_p=call.top_p,
        top_k=call.top_k,
        seed=call.seed,
        max_tokens=call.max_tokens,
        stop_sequences=list(call.stop_sequences),
        tools=[
            ToolDefinition(name=t.name, description=t.description, parameters=t.parameters)
            for t in call.tools
        ],
    )


def _error(kind: str | None, message: str | None) -> StepError | None:
    if kind is None and message is None:
        return None
    return StepError(type=kind or "error", message=message or "")


def _usage(call: ModelCall) -> Usage | None:
    if call.input_tokens is None and call.output_tokens is None:
        return None
    return Usage(
        input_tokens=call.input_tokens or 0,
        output_tokens=call.output_tokens or 0,
        cache_read_input_tokens=call.cache_read_input_tokens,
        reasoning_output_tokens=call.reasoning_output_tokens,
    )


def _total(usages: Sequence[Usage]) -> Usage | None:
    if not usages:
        return None

    def add(name: str) -> int | None:
        values = [getattr(u, name) for u in usages if getattr(u, name) is not None]
        return sum(values) if values else None

    return Usage(
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        cache_read_input_tokens=add("cache_read_input_tokens"),
        reasoning_output_tokens=add("reasoning_output_tokens"),
    )


def _tool_content(content: str) -> Any:
    # A tool turn carries the result as the model read it: JSON when it is JSON.
    try:
        return _any.decode(content)
    except msgspec.DecodeError:
        return content


def _answered(call: ModelCall | None) -> dict[str, ObservedMessage]:
    """The tool turns in `call`'s conversation, by the call id they answer."""
    if call is None or call.messages is None:
        return {}
    return {m.tool_call_id: m for m in call.messages if m.role == "tool" and m.tool_call_id}


def _llm_step(call: ModelCall) -> LlmCall:
    outputs: dict[str, Any] = {"text": call.text or ""}
    if call.tool_calls:
        outputs["tool_calls"] = [msgspec.to_builtins(t) for t in call.tool_calls]
    if call.response is not None:
        outputs["response"] = call.response
    return LlmCall(
        started_at=call.started_at,
        ended_at=max(call.ended_at, call.started_at),
        inputs=call.request,
        outputs=outputs,
        usage=_usage(call),
        error=_error(call.error_type, call.error_message),
        response_id=call.response_id,
        finish_reason=call.finish_reason,
    )


def _tool_step(run: ToolRun, call_id: str) -> ToolCall:
    return ToolCall(
        started_at=run.started_at,
        ended_at=max(run.ended_at, run.started_at),
        name=run.name,
        call_id=call_id,
        arguments=run.arguments,
        result=run.result,
        error=_error(run.error_type, run.error_message),
    )


def _retrieval_step(run: RetrievalRun) -> Retrieval:
    return Retrieval(
        started_at=run.started_at,
        ended_at=max(run.ended_at, run.started_at),
        source=run.source,
        inputs=run.query,
        outputs=run.documents,
        error=_error(run.error_type, run.error_message),
    )


def _call_steps(
    calls: Sequence[ModelCall], runs: dict[str, list[ToolRun]], used: set[int]
) -> list[tuple[datetime, int, list[Step]]]:
    """Each call's LlmCall step and the ToolCall steps of the tools it asked for; a run
    that answers one (by call id, first come first served) is taken from `runs` and its
    `id()` added to `used`."""
    groups: list[tuple[datetime, int, list[Step]]] = []
    for position, call in enumerate(calls):
        following = calls[position + 1] if position + 1 < len(calls) else None
        answers = _answered(following)
        steps: list[Step] = [_llm_step(call)]
        for asked in call.tool_calls:
            waiting = runs.get(asked.call_id)
            run = waiting.pop(0) if waiting else None
            if run is not None:
                used.add(id(run))
            else:
                turn = answers.get(asked.call_id)
                end = following.started_at if following is not None else call.ended_at
                run = ToolRun(
                    name=asked.name,
                    call_id=asked.call_id,
                    arguments=asked.arguments,
                    result=_tool_content(turn.content) if turn is not None else None,
                    started_at=max(call.ended_at, call.started_at),
                    ended_at=max(end, call.ended_at, call.started_at),
                )
            steps.append(_tool_step(run, asked.call_id))
        groups.append((call.started_at, 0, steps))
    return groups


def _not_replayable(calls: Sequence[ModelCall]) -> str | None:
    for position, call in enumerate(calls):
        if call.messages is None:
            return (
                f"model call {position + 1} of {len(calls)} ({call.request_model}) was recorded "
                "without its messages, so its requests cannot be rebuilt; capture message "
                "content in the instrumentation to make decisions replayable"
            )
    return None


def assemble_decision(
    calls: Sequence[ModelCall],
    tools: Sequence[ToolRun] = (),
    retrievals: Sequence[RetrievalRun] = (),
    *,
    template_id: str,
) -> Assembled:
    """The model, prompt, steps, usage and answer that `calls`, `tools` and `retrievals`
    make; `template_id` names the prompt (the decision type, say)."""
    ordered = sorted(calls, key=lambda call: call.started_at)
    runs: dict[str, list[ToolRun]] = {}
    for run in tools:
        if run.call_id is not None:
            runs.setdefault(run.call_id, []).append(run)
    used: set[int] = set()
    groups = _call_steps(ordered, runs, used)
    for number, run in enumerate(tools):
        # A run the model asked for was placed after its call; the rest go by time.
        if id(run) in used:
            continue
        groups.append((run.started_at, 1, [_tool_step(run, run.call_id or f"tool-{number}")]))
    groups += [(run.started_at, 2, [_retrieval_step(run)]) for run in retrievals]
    groups.sort(key=lambda group: (group[0], group[1]))
    steps = [step for _, _, group in groups for step in group]
    last = ordered[-1] if ordered else None
    text = last.text if last is not None else None
    usages = [usage for usage in (_usage(call) for call in ordered) if usage is not None]
    return Assembled(
        model=_model(ordered[0]) if ordered else NO_MODEL,
        prompt=_prompt(ordered[0], template_id) if ordered else None,
        steps=steps,
        usage=_total(usages),
        text=text,
        finish_reason=last.finish_reason if last is not None else None,
        decision=(decision_from_text(text) or {}) if text else {},
        not_replayable=_not_replayable(ordered),
    )
