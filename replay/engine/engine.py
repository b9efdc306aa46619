"""The replay engine: re-run one recorded decision under a plan and say how it differs.

`replay_decision` rebuilds the recorded run's requests (replay/engine/requests.py), replays it
(replay/engine/run.py) with answers from the record (``deterministic``), from the recorded model
and version (``pinned``) or from the plan's model, version and parameters
(``counterfactual``), derives the replayed decision (the provider's own, else the JSON in
the final text: ledger/records/decision_text.py), diffs it against the record
(replay/engine/diff.py) and
returns the unsigned `ReplayRecord`. Signing and appending it is the caller's.

A plan that cannot run anywhere is refused up front with `ReplayPlanError`
(`check_plan`); what can go wrong for one decision (a provider that fails after its
retries, no route for its model, a prompt blob that is gone) is the verdict ``failed``
with `error` naming the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from ledger.errors import ProvError
from ledger.indexes.replays import leaf_reference
from ledger.records.decision import NOT_REPLAYABLE_ATTRIBUTE, Decision, Output
from ledger.records.decision_text import decision_from_text
from ledger.records.replay import REPLAY_SERVICE, Mode, ModelRef, ReplayRecord
from replay.engine.diff import compare, verdict_of
from replay.engine.requests import (
    Blobs,
    BlobUnavailable,
    RecordedRun,
    base_request,
    initial_messages,
    parameters_of,
    parse_sampling,
    recorded_run,
    requested,
    with_sampling,
)
from replay.engine.run import (
    Conversation,
    PooledAnswers,
    RecordedAnswers,
    RunResult,
    asked,
    run_replay,
)
from replay.engine.tools import ToolHandlers
from replay.providers import ChatRequest, ChatResponse, ProviderPool, UnknownModel

# The provider a `ModelRef` names when the registry routes the model nowhere.
UNROUTED = "unrouted"


class ReplayPlanError(ProvError, ValueError):
    """A plan that cannot run: raised before anything is called."""

    kind = "bad-replay-plan"
    title = "Replay plan cannot run"


class NotReplayable(ReplayPlanError):
    """The record cannot be replayed at all: its requests cannot be rebuilt (a decision
    built from spans that carried no message content), whatever the plan."""

    kind = "not-replayable"
    title = "Decision cannot be replayed"


def check_replayable(decision: Decision) -> None:
    """Refuse, with the record's own reason, a decision whose run cannot be rebuilt."""
    reason = decision.attributes.get(NOT_REPLAYABLE_ATTRIBUTE)
    if isinstance(reason, str):
        raise NotReplayable(f"decision {decision.id} cannot be replayed: {reason}")


class ReplayPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to replay with.

    `model`, `version` and `parameters` are for ``counterfactual`` only. Without `model`
    the recorded model is kept, and its recorded version unless `version` is given; with
    `model`, `version` picks the route (None: the model's any-version route).
    `parameters` override the recorded sampling parameters (temperature, top_p, top_k,
    seed, max_tokens, stop_sequences; None stops sending one). `stream` asks providers for
    streamed answers.
    """

    mode: Mode
    model: str | None = None
    version: str | None = None
    parameters: dict[str, Any] = {}
    stream: bool = False


def _utc_now() -> datetime:
    return datetime.now(UTC)


def check_plan(plan: ReplayPlan, pool: ProviderPool | None) -> None:
    """Refuse a plan that cannot run for any decision; `ReplayPlanError` says why."""
    for name, value in (("model", plan.model), ("version", plan.version)):
        if value is not None and not value.strip():
            raise ReplayPlanError(f"{name} must not be empty")
    changes = plan.model is not None or plan.version is not None or bool(plan.parameters)
    if plan.mode == "deterministic":
        if changes:
            raise ReplayPlanError(
                "a deterministic replay feeds the record back: it takes no model, version "
                "or parameters (use counterfactual)"
            )
        return
    if pool is None:
        raise ReplayPlanError(f"a {plan.mode} replay calls a model: it needs a provider pool")
    if plan.mode == "pinned":
        if changes:
            raise ReplayPlanError(
                "a pinned replay calls the recorded model and version with the recorded "
                "parameters: use counterfactual to change them"
            )
        return
    if not changes:
        raise ReplayPlanError("a counterfactual replay needs another model, version or parameters")
    try:
        parse_sampling(plan.parameters)
    except ValueError as error:
        raise ReplayPlanError(str(error)) from None
    if plan.model is not None:
        try:
            pool.registry.resolve(plan.model, plan.version)
        except UnknownModel as error:
            raise ReplayPlanError(error.detail) from None


def _target(plan: ReplayPlan, recorded: ChatRequest) -> ChatRequest:
    if plan.mode == "pinned":
        return recorded
    if plan.model is None:
        model = recorded.model
        version = plan.version if plan.version is not None else recorded.version
    else:
        model, version = plan.model, plan.version
    request = msgspec.structs.replace(recorded, model=model, version=version)
    return with_sampling(request, parse_sampling(plan.parameters))


def _model_ref(pool: ProviderPool, request: ChatRequest) -> ModelRef:
    try:
        provider = pool.registry.resolve(request.model, request.version).provider.name
    except UnknownModel:
        provider = UNROUTED  # the run fails on the same lookup, and says so
    return ModelRef(
        provider=provider,
        name=request.model,
        version=request.version,
        parameters=parameters_of(request),
    )


def _replayed_decision(final: ChatResponse) -> dict[str, Any] | None:
    if final.decision is not None:
        # As JSON sees it: a decision function may return Decimals or tuples.
        decision: dict[str, Any] = msgspec.to_builtins(final.decision)
        return decision
    return decision_from_text(final.text)


async def _run(
    decision: Decision,
    recorded: RecordedRun,
    base: ChatRequest,
    plan: ReplayPlan,
    pool: ProviderPool | None,
    blobs: Blobs,
    tools: ToolHandlers | None,
) -> tuple[ModelRef | None, RunResult]:
    """Replay under `plan`; the model called (None: the recorded one) and the run."""
    if plan.mode == "deterministic":
        # Nothing is sent anywhere, so the prompt messages are not needed.
        answers = RecordedAnswers(recorded, decision.model)
        result = await run_replay(
            recorded,
            answers,
            Conversation([]),
            recorded_steps=len(decision.steps),
            handlers=None,
        )
        return None, result
    assert pool is not None  # check_plan
    request = _target(plan, base)
    model = _model_ref(pool, request)
    try:
        messages = initial_messages(decision, blobs)
    except BlobUnavailable as unavailable:
        return model, RunResult(error=unavailable.error)
    result = await run_replay(
        recorded,
        PooledAnswers(pool, request, stream=plan.stream),
        Conversation(messages),
        recorded_steps=len(decision.steps),
        handlers=tools,
    )
    return model, result


async def replay_decision(
    decision: Decision,
    *,
    leaf_hash: bytes,
    plan: ReplayPlan,
    pool: ProviderPool | None,
    blobs: Callable[[str], bytes | None],
    tools: ToolHandlers | None = None,
    record_id: str,
    batch: str | None = None,
    now: Callable[[], datetime] = _utc_now,
) -> ReplayRecord:
    """Replay `decision` (logged under `leaf_hash`) and return the unsigned replay record.

    Raises `ReplayPlanError` for a plan that cannot run; provider failures and missing
    blobs are the verdict ``failed``, never an exception.
    """
    check_plan(plan, pool)
    check_replayable(decision)
    occurred_at = now()
    recorded = recorded_run(decision)
    base = base_request(decision, [])
    recorded_model = ModelRef(
        provider=decision.model.provider,
        name=decision.model.name,
        version=decision.model.version,
        parameters=parameters_of(base),
    )
    model, result = await _run(decision, recorded, base, plan, pool, blobs, tools)
    final = result.final
    replayed = _replayed_decision(final) if final is not None else None
    usage = result.usage()
    diff = compare(
        recorded_decision=decision.output.decision,
        recorded_text=decision.output.text,
        recorded_usage=decision.usage,
        recorded_model_ms=_model_time(recorded),
        recorded_calls=[asked(requested(tool)) for tool in recorded.tools],
        replayed_calls=result.asked,
        usage=usage,
        finished=final is not None,
        decision=replayed,
        text=final.text if final is not None else None,
    )
    return ReplayRecord(
        id=record_id,
        tenant=decision.tenant,
        service=REPLAY_SERVICE,
        occurred_at=occurred_at,
        replay_of=decision.id,
        replay_of_leaf=leaf_reference(leaf_hash),
        batch=batch,
        mode=plan.mode,
        recorded_model=recorded_model,
        model=model or recorded_model,
        verdict=verdict_of(diff, divergence=result.divergence, error=result.error),
        divergence=result.divergence,
        error=result.error,
        steps=result.steps,
        output=None
        if final is None or replayed is None
        else Output(decision=replayed, text=final.text, finish_reason=final.finish_reason),
        usage=usage,
        diff=diff,
    )


def _model_time(recorded: RecordedRun) -> int | None:
    """The milliseconds the recorded run spent in its LLM calls; None without any."""
    timed = [call.latency_ms for call in recorded.calls if call.step is not None]
    return sum(timed) if timed else None
