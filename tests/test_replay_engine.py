"""The replay engine: deterministic replay of the demo ledger, pinned and counterfactual
replay against real loopback model servers, entry-point rule versions, provider failures,
missing blobs and refused plans.

No real model provider is reachable here: `tests.model_servers.ModelServer` speaks the
OpenAI and Anthropic wire formats (plain and streamed) as a deterministic model whose
answers depend on the model name and version, so a counterfactual run really differs.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from ledger.records.decision import Cost, Decision, LlmCall, StepError, ToolCall, Usage
from ledger.records.decision_text import decision_from_text
from ledger.records.replay import FieldChange, ReplayedLlmCall, ReplayedToolCall
from replay.engine.engine import ReplayPlan, ReplayPlanError, check_plan, replay_decision
from replay.engine.requests import recorded_requests
from replay.engine.tools import ToolHandlers
from replay.providers import ChatMessage, ProviderPool, parse_registry
from replay.providers import ToolCall as RequestedToolCall
from service.demo.loan_rules import approve_loan_v1, approve_loan_v2
from service.demo.scenarios import SCENARIOS, demo_decisions, demo_records
from tests import replay_support
from tests.model_servers import ENV, ModelServer
from tests.replay_support import (
    ASKED,
    LEAF,
    LOOKUP,
    REPLAYED_AT,
    SYSTEM,
    USER,
    Steps,
    checked,
    compact,
    decision,
    no_blobs,
    recorded_text,
    registry,
    replay,
    replay_with,
)

DETERMINISTIC = ReplayPlan(mode="deterministic")
PINNED = ReplayPlan(mode="pinned")
FILE = {"score": 712, "band": "prime"}


# The local model server fixtures of `tests.replay_support`, bound here for pytest to find.
model_server = replay_support.model_server
srv = replay_support.srv


def tool_run(wire_model: str = "scorer-v1", **extra: Any) -> Decision:
    """What `wire_model` did: look the applicant up, then answer quoting the file (and so
    stating it as JSON, which is the decision)."""
    steps = Steps().retrieval().llm().tool("lookup", ASKED, FILE).llm(tokens=(60, 12))
    return decision(steps, decided=FILE, text=recorded_text(wire_model, FILE), **extra)


def text_run(wire_model: str = "scorer-v1", **extra: Any) -> Decision:
    """A plain answer with no tools offered and no JSON in it: a text-only decision."""
    text = recorded_text(wire_model)
    return decision(
        Steps().llm(text), decided={"verdict": text.split()[1]}, text=text, tools=(), **extra
    )


# Deterministic replay --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2025])
def test_deterministic_replay_reproduces_every_demo_record(seed: int) -> None:
    """No provider and no blob is needed: the record's own answers and tool results are
    fed back, and every scenario comes out identical."""
    seen = set()
    for recorded in demo_decisions(60, seed=seed):
        record = replay(recorded, DETERMINISTIC)
        seen.add(recorded.decision_type)
        assert record.verdict == "identical", (recorded.id, record.diff)
        assert record.divergence is None
        assert record.error is None
        assert record.model == record.recorded_model
        assert record.recorded_model.name == recorded.model.name
        llm_steps = [i for i, s in enumerate(recorded.steps) if isinstance(s, LlmCall)]
        replayed_llm = [s for s in record.steps if isinstance(s, ReplayedLlmCall)]
        assert [s.recorded_step for s in replayed_llm] == llm_steps
        # Every tool call a model asked for is fed back from the record, by its step.
        asked = [
            i for i, s in enumerate(recorded.steps) if isinstance(s, ToolCall) and i > llm_steps[0]
        ]
        fed = [s for s in record.steps if isinstance(s, ReplayedToolCall)]
        assert [s.recorded_step for s in fed] == asked
        for step in fed:
            original = recorded.steps[step.recorded_step or 0]
            assert isinstance(original, ToolCall)
            assert (step.source, step.result, step.error) == (
                "recorded",
                original.result,
                original.error,
            )
        assert record.usage is not None
        assert record.usage.input_tokens == sum(
            recorded.steps[i].usage.input_tokens  # type: ignore[union-attr]
            for i in llm_steps
        )
        assert record.diff.decision == []
        assert not record.diff.text_changed
        assert record.diff.tool_calls == []
        # The decision is derived from the final text when that states one as JSON, and
        # compared field by field; otherwise the text alone is compared.
        derived = decision_from_text(recorded.output.text or "")
        assert record.diff.text_only is (derived is None)
        if derived is None:
            assert record.output is None
        else:
            assert record.output is not None
            assert record.output.decision == derived == recorded.output.decision
    assert seen == set(SCENARIOS)


def test_deterministic_replay_flags_a_record_whose_decision_disagrees_with_its_text() -> None:
    recorded = next(d for d in demo_decisions(3, seed=5) if d.decision_type == "order.route")
    days = recorded.output.decision["days"]
    altered = msgspec.structs.replace(
        recorded,
        output=msgspec.structs.replace(
            recorded.output, decision={**recorded.output.decision, "days": days + 3}
        ),
    )

    record = replay(altered, DETERMINISTIC)

    assert record.verdict == "changed"
    assert record.diff.decision == [
        FieldChange(path="/days", change="changed", before=days + 3, after=days)
    ]


def test_deterministic_replay_of_a_record_ending_in_tool_calls_and_of_one_without_llm_calls() -> (
    None
):
    ends_in_tools = decision(
        Steps().llm().tool("lookup", ASKED, FILE),
        decided=FILE,
        text=compact(FILE),
    )
    record = replay(ends_in_tools, DETERMINISTIC)
    assert record.verdict == "identical"
    assert [type(s).__name__ for s in record.steps] == ["ReplayedLlmCall", "ReplayedToolCall"]
    assert record.output is not None
    assert record.output.decision == FILE

    no_llm = decision(Steps().retrieval(), decided=FILE, text=compact(FILE), tools=())
    record = replay(no_llm, DETERMINISTIC)
    assert record.verdict == "identical"
    [only] = record.steps
    assert isinstance(only, ReplayedLlmCall)
    assert only.recorded_step is None


def test_the_record_names_its_decision_batch_and_time() -> None:
    recorded = tool_run()

    async def go() -> Any:
        return await replay_decision(
            recorded,
            leaf_hash=LEAF,
            plan=DETERMINISTIC,
            pool=None,
            blobs=lambda digest: None,
            record_id="rp-7",
            batch="batch-2025-07",
            now=lambda: REPLAYED_AT,
        )

    record = checked(asyncio.run(go()))
    assert (record.id, record.tenant, record.service) == ("rp-7", "acme", "prov-replay")
    assert record.replay_of == recorded.id
    assert record.replay_of_leaf == "sha256:" + LEAF.hex()
    assert record.batch == "batch-2025-07"
    assert record.occurred_at == REPLAYED_AT
    assert record.mode == "deterministic"


# Entry points: versioned decision functions -------------------------------------------

RULES = """
[providers.rules]
kind = "python"

[[models]]
name = "loan-rules"
provider = "rules"
entry_point = "service.demo.loan_rules:approve_loan_{version}"
"""
# v1 approves (score 660 >= 650, DTI 0.40 <= 0.43); v2 declines on all three counts.
BORDERLINE = {
    "credit_score": 660,
    "annual_income": "60000",
    "monthly_debt": "2000",
    "amount": "35000",
}
# Both versions approve.
STRONG = {"credit_score": 760, "annual_income": "120000", "monthly_debt": "1500", "amount": "20000"}
# Both versions decline, for different reasons.
WEAK = {"credit_score": 600, "annual_income": "40000", "monthly_debt": "1800", "amount": "5000"}


def rule_decision(inputs: dict[str, Any]) -> Decision:
    decided = approve_loan_v1(inputs)
    return decision(
        [],
        decided=decided,
        text=msgspec.json.encode(decided, order="sorted").decode(),
        provider="rules",
        name="loan-rules",
        version="v1",
        tools=(),
        inputs=inputs,
    )


def replay_rules(recorded: Decision, plan: ReplayPlan) -> Any:
    async def go() -> Any:
        async with ProviderPool(parse_registry(RULES)) as pool:
            return await replay_with(pool, recorded, plan)

    return checked(asyncio.run(go()))


@pytest.mark.parametrize("inputs", [BORDERLINE, STRONG, WEAK], ids=["borderline", "strong", "weak"])
def test_entry_point_v1_against_itself_is_identical(inputs: dict[str, Any]) -> None:
    record = replay_rules(rule_decision(inputs), PINNED)
    assert record.verdict == "identical"
    assert record.model.provider == "rules"
    assert record.output is not None
    assert record.output.decision == approve_loan_v1(inputs)
    [call] = record.steps
    assert isinstance(call, ReplayedLlmCall)
    assert call.model_version == "service.demo.loan_rules:approve_loan_v1"


def test_entry_point_v2_changes_the_borderline_applicant_field_by_field() -> None:
    record = replay_rules(
        rule_decision(BORDERLINE), ReplayPlan(mode="counterfactual", version="v2")
    )

    assert record.verdict == "changed"
    assert record.model.version == "v2"
    assert record.diff.decision == [
        FieldChange(path="/approved", change="changed", before=True, after=False),
        FieldChange(path="/reasons/0", change="added", after="credit_score_below_680"),
        FieldChange(path="/reasons/1", change="added", after="dti_above_0.36"),
        FieldChange(path="/reasons/2", change="added", after="amount_above_half_income"),
        FieldChange(path="/rule_version", change="changed", before="v1", after="v2"),
    ]
    assert record.output is not None
    assert record.output.decision == approve_loan_v2(BORDERLINE)


def test_entry_point_v2_where_the_versions_agree_changes_only_the_rule_version() -> None:
    strong = replay_rules(rule_decision(STRONG), ReplayPlan(mode="counterfactual", version="v2"))
    assert strong.verdict == "changed"
    assert [c.path for c in strong.diff.decision] == ["/rule_version"]

    weak = replay_rules(rule_decision(WEAK), ReplayPlan(mode="counterfactual", version="v2"))
    assert weak.verdict == "changed"
    assert [(c.path, c.change) for c in weak.diff.decision] == [
        ("/reasons/0", "changed"),
        ("/reasons/1", "changed"),
        ("/rule_version", "changed"),
    ]
    assert weak.diff.decision[0].before == "credit_score_below_650"
    assert weak.diff.decision[0].after == "credit_score_below_680"


# Pinned and counterfactual over HTTP ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_pinned_openai_replay_of_a_tool_run_is_identical(srv: ModelServer, stream: bool) -> None:
    recorded = tool_run(temperature=0.0, seed=11, max_tokens=300)

    record = replay(recorded, ReplayPlan(mode="pinned", stream=stream), server=srv)

    assert record.verdict == "identical", record.diff
    assert record.model.provider == "oa"
    assert record.model.parameters == {"temperature": 0.0, "seed": 11, "max_tokens": 300}
    first, fed, final = record.steps
    assert isinstance(first, ReplayedLlmCall)
    assert isinstance(fed, ReplayedToolCall)
    assert isinstance(final, ReplayedLlmCall)
    assert (first.recorded_step, fed.recorded_step, final.recorded_step) == (1, 2, 3)
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("lookup", ASKED)]
    # The model's own call id, not the recorded one, carries the recorded result.
    assert fed.call_id == first.tool_calls[0].call_id != "call_recorded_2"
    assert (fed.source, fed.result) == ("recorded", FILE)
    assert final.text == recorded.output.text
    assert final.fingerprint is not None
    assert record.output is not None
    assert record.output.decision == FILE

    # The requests on the wire: the recorded one, then the conversation with the result.
    opening, follow_up = (seen.body for seen in srv.requests)
    assert opening["model"] == "scorer-v1"
    assert (opening["temperature"], opening["seed"], opening["max_tokens"]) == (0.0, 11, 300)
    assert [m["content"] for m in opening["messages"]] == [SYSTEM, USER]
    assert [t["function"]["name"] for t in opening["tools"]] == ["lookup", "fetch_history"]
    assert opening.get("stream", False) is stream
    assistant, answer = follow_up["messages"][2:]
    assert assistant["tool_calls"][0]["id"] == fed.call_id
    assert answer == {"role": "tool", "tool_call_id": fed.call_id, "content": compact(FILE)}

    # Usage is the sum of the two calls, priced by the registry (USD 2.50 / 10.00 per Mtok).
    assert record.usage is not None
    assert record.usage.input_tokens == first.input_tokens + final.input_tokens
    assert record.usage.cost is not None
    assert record.usage.cost.currency == "USD"
    expected = (
        record.usage.input_tokens * Decimal("2.50") + record.usage.output_tokens * Decimal("10.00")
    ) / 1_000_000
    assert record.usage.cost.amount == expected
    assert record.diff.cost.after == expected


def test_the_pinned_wire_requests_are_the_rebuilt_recorded_requests(srv: ModelServer) -> None:
    recorded = tool_run()
    record = replay(recorded, PINNED, server=srv)
    assert record.verdict == "identical"
    rebuilt = recorded_requests(recorded, lambda digest: None)
    new_id = record.steps[1].call_id
    for request, seen in zip(rebuilt, srv.requests, strict=True):
        wire = [
            (m.role, m.content, [c.name for c in m.tool_calls], m.tool_call_id is not None)
            for m in request.messages
        ]
        sent = [
            (
                m["role"],
                m.get("content") or "",
                [c["function"]["name"] for c in m.get("tool_calls", [])],
                "tool_call_id" in m,
            )
            for m in seen.body["messages"]
        ]
        assert wire == sent
    assert srv.requests[1].body["messages"][3]["tool_call_id"] == new_id


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_pinned_anthropic_replay_is_identical_and_counterfactual_differs(
    srv: ModelServer, stream: bool
) -> None:
    recorded = tool_run("msg-test-v1", name="writer", provider="anthropic", max_tokens=256)

    pinned = replay(recorded, ReplayPlan(mode="pinned", stream=stream), server=srv)
    assert pinned.verdict == "identical", pinned.diff
    assert pinned.model.provider == "an"
    fed = pinned.steps[1]
    assert isinstance(fed, ReplayedToolCall)
    assert fed.call_id.startswith("toolu_")
    assert {seen.path for seen in srv.requests} == {"/v1/messages"}
    assert srv.requests[0].body["system"] == SYSTEM

    srv.reset()
    other = replay(
        recorded, ReplayPlan(mode="counterfactual", version="v2", stream=stream), server=srv
    )
    # The same file is quoted (same decision), in other words: equivalent.
    assert other.verdict == "equivalent"
    assert other.diff.decision == []
    assert other.diff.text_changed
    assert other.diff.text_before == recorded.output.text
    assert other.diff.text_after is not None
    assert other.diff.text_after.startswith("msg-test-v2: ")
    assert srv.requests[0].body["model"] == "msg-test-v2"


def test_counterfactual_version_changes_a_text_only_decision(srv: ModelServer) -> None:
    recorded = text_run()
    assert replay(recorded, PINNED, server=srv).verdict == "identical"

    record = replay(recorded, ReplayPlan(mode="counterfactual", version="v2"), server=srv)

    assert record.verdict == "changed"
    assert record.diff.text_only
    assert record.diff.decision == []
    assert record.diff.text_after == recorded_text("scorer-v2")
    assert record.output is None
    assert (record.recorded_model.version, record.model.version) == ("v1", "v2")


def test_counterfactual_on_another_provider(srv: ModelServer) -> None:
    recorded = tool_run()

    record = replay(
        recorded, ReplayPlan(mode="counterfactual", model="writer", version="v3"), server=srv
    )

    assert record.verdict == "equivalent"
    assert (record.model.provider, record.model.name, record.model.version) == (
        "an",
        "writer",
        "v3",
    )
    assert record.recorded_model.provider == "openai"
    assert {seen.path for seen in srv.requests} == {"/v1/messages"}
    final = record.steps[-1]
    assert isinstance(final, ReplayedLlmCall)
    assert final.text == recorded_text("msg-test-v3", FILE)


def test_counterfactual_parameters_are_sent_and_recorded(srv: ModelServer) -> None:
    recorded = tool_run(temperature=0.0, seed=11, max_tokens=300)
    plan = ReplayPlan(
        mode="counterfactual",
        parameters={"temperature": 0.7, "seed": None, "stop_sequences": ["</end>"]},
    )

    record = replay(recorded, plan, server=srv)

    # This model's answers do not depend on sampling: the decision stands.
    assert record.verdict == "identical"
    assert record.model.parameters == {
        "temperature": 0.7,
        "max_tokens": 300,
        "stop_sequences": ["</end>"],
    }
    body = srv.requests[0].body
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.7, 300, ["</end>"])
    assert "seed" not in body


def test_usage_deltas_compare_with_the_record(srv: ModelServer) -> None:
    recorded_usage = Usage(
        input_tokens=5,
        output_tokens=3,
        cost=Cost(amount=Decimal("0.5"), currency="USD"),
        latency_ms=9,
    )
    record = replay(tool_run(usage=recorded_usage), PINNED, server=srv)
    assert record.usage is not None
    assert record.diff.input_tokens.before == 5
    assert record.diff.input_tokens.after == record.usage.input_tokens
    assert record.diff.output_tokens.after == record.usage.output_tokens
    assert record.diff.cost.before == Decimal("0.5")
    assert record.usage.cost is not None
    assert record.diff.cost.after == record.usage.cost.amount
    assert record.diff.cost.currency == "USD"
    # Model time against model time: the record's two LLM calls of 300 ms each, not the
    # 9 ms its usage gives for the whole decision.
    assert record.diff.latency_ms.before == 600
    assert record.diff.latency_ms.after == record.usage.latency_ms

    # A replay priced in another currency (EUR for scorer v3) has no cost to subtract.
    srv.reset()
    euro = replay(
        tool_run(usage=recorded_usage),
        ReplayPlan(mode="counterfactual", version="v3"),
        server=srv,
    )
    assert euro.usage is not None
    assert euro.usage.cost is not None
    assert euro.usage.cost.currency == "EUR"
    assert (euro.diff.cost.before, euro.diff.cost.after, euro.diff.cost.currency) == (
        Decimal("0.5"),
        None,
        "USD",
    )


# Prompt messages kept as a blob -------------------------------------------------------------

MESSAGES = msgspec.json.encode(
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
)
MESSAGES_DIGEST = "sha256:" + hashlib.sha256(MESSAGES).hexdigest()


def test_messages_are_read_from_their_blob(srv: ModelServer) -> None:
    recorded = tool_run(messages_blob=MESSAGES_DIGEST)
    asked: list[str] = []

    def blobs(digest: str) -> bytes | None:
        asked.append(digest)
        return MESSAGES if digest == MESSAGES_DIGEST else None

    record = replay(recorded, PINNED, server=srv, blobs=blobs)

    assert record.verdict == "identical"
    assert asked == [MESSAGES_DIGEST]
    assert [m["content"] for m in srv.requests[0].body["messages"]] == [SYSTEM, USER]


@pytest.mark.parametrize(
    ("stored", "kind"),
    [
        (None, "blob_missing"),
        (MESSAGES + b" ", "blob_invalid"),
    ],
    ids=["erased", "altered"],
)
def test_a_missing_or_altered_messages_blob_fails_the_replay(
    srv: ModelServer, stored: bytes | None, kind: str
) -> None:
    recorded = tool_run(messages_blob=MESSAGES_DIGEST)

    record = replay(recorded, PINNED, server=srv, blobs=lambda digest: stored)

    assert record.verdict == "failed"
    assert record.error is not None
    assert record.error.type == kind
    assert MESSAGES_DIGEST in record.error.message
    assert record.steps == []
    assert record.usage is None
    assert srv.request_count == 0


def test_a_messages_blob_that_is_not_messages_fails_the_replay(srv: ModelServer) -> None:
    junk = b'{"role": "user"}'
    digest = "sha256:" + hashlib.sha256(junk).hexdigest()
    record = replay(tool_run(messages_blob=digest), PINNED, server=srv, blobs=lambda d: junk)
    assert record.verdict == "failed"
    assert record.error is not None
    assert record.error.type == "blob_invalid"
    assert "not a JSON array" in record.error.message


# Provider failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "settings", "kind"),
    [
        (lambda s: s.fail(500, times=3), {"max_retries": 2}, "server_error"),
        (lambda s: s.fail(429, times=3, retry_after="0"), {"max_retries": 2}, "rate_limited"),
        (lambda s: s.delay(2.0, times=2), {"max_retries": 1, "timeout_s": 0.3}, "provider_timeout"),
    ],
    ids=["500", "429", "timeout"],
)
def test_a_provider_that_keeps_failing_fails_the_replay(
    srv: ModelServer, script: Any, settings: dict[str, Any], kind: str
) -> None:
    script(srv.script)

    record = replay(tool_run(), PINNED, server=srv, settings=settings)

    assert record.verdict == "failed"
    assert record.error is not None
    assert record.error.type == kind
    attempts = settings["max_retries"] + 1
    assert record.error.message.startswith("oa: ")
    assert f"after {attempts} attempts" in record.error.message
    assert record.steps == []
    assert record.output is None
    assert srv.request_count == attempts


def test_an_open_breaker_fails_the_replay_without_a_request(srv: ModelServer) -> None:
    srv.script.fail(500, times=1)

    async def go() -> tuple[Any, Any]:
        settings = {"max_retries": 0, "failure_threshold": 1}
        async with ProviderPool(registry(srv, **settings), env=ENV) as pool:
            first = await replay_with(pool, tool_run(), PINNED)
            second = await replay_with(pool, tool_run(), PINNED)
            return first, second

    first, second = asyncio.run(go())
    assert checked(first).error is not None
    assert first.error.type == "server_error"
    assert checked(second).verdict == "failed"
    assert second.error is not None
    assert second.error.type == "circuit_open"
    assert srv.request_count == 1


def test_a_failure_mid_run_keeps_the_steps_that_ran(srv: ModelServer) -> None:
    srv.script.delay(0.0, times=1)  # the first request is answered normally
    srv.script.fail(503, times=2)

    record = replay(tool_run(), PINNED, server=srv, settings={"max_retries": 1})

    assert record.verdict == "failed"
    assert record.error is not None
    assert record.error.type == "server_error"
    assert [type(s).__name__ for s in record.steps] == ["ReplayedLlmCall", "ReplayedToolCall"]
    assert record.usage is not None
    assert record.usage.input_tokens > 0
    assert record.diff.tool_calls == []  # compared only as far as it got


def test_a_model_without_a_route_fails_the_replay(srv: ModelServer) -> None:
    record = replay(tool_run(name="retired-model"), PINNED, server=srv)
    assert record.verdict == "failed"
    assert record.error is not None
    assert record.error.type == "unknown_model"
    assert "retired-model" in record.error.message
    assert record.model.provider == "unrouted"
    assert srv.request_count == 0


# Plans refused before anything runs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "with_pool", "message"),
    [
        (ReplayPlan(mode="deterministic", version="v2"), False, "takes no model"),
        (ReplayPlan(mode="pinned"), False, "needs a provider pool"),
        (ReplayPlan(mode="counterfactual", version="v2"), False, "needs a provider pool"),
        (ReplayPlan(mode="pinned", parameters={"seed": 1}), True, "use counterfactual"),
        (ReplayPlan(mode="counterfactual"), True, "needs another model, version or parameters"),
        (
            ReplayPlan(mode="counterfactual", parameters={"temprature": 0.5}),
            True,
            "unknown field `temprature`",
        ),
        (
            ReplayPlan(mode="counterfactual", parameters={"top_p": 2}),
            True,
            "parameters/top_p",
        ),
        (ReplayPlan(mode="counterfactual", model="nonesuch"), True, "no route for model"),
        (ReplayPlan(mode="counterfactual", version=" "), True, "version must not be empty"),
    ],
)
def test_plans_that_cannot_run_are_refused(
    srv: ModelServer, plan: ReplayPlan, with_pool: bool, message: str
) -> None:
    async def go() -> None:
        async with ProviderPool(registry(srv), env=ENV) as pool:
            chosen = pool if with_pool else None
            with pytest.raises(ReplayPlanError, match=message):
                check_plan(plan, chosen)
            with pytest.raises(ReplayPlanError, match=message):
                await replay_with(chosen, tool_run(), plan)

    asyncio.run(go())
    assert srv.request_count == 0


def test_deterministic_replay_ignores_live_handlers() -> None:
    calls: list[dict[str, Any]] = []
    handlers = ToolHandlers({"lookup": lambda arguments: calls.append(arguments) or FILE})
    record = replay(tool_run(), DETERMINISTIC, tools=handlers)
    assert record.verdict == "identical"
    assert calls == []
    assert {s.source for s in record.steps if isinstance(s, ReplayedToolCall)} == {"recorded"}


def test_every_demo_record_rebuilds_its_requests_from_its_blobs() -> None:
    """The demo hands over the bytes of every blob it references; the recorded requests
    are rebuilt from them (digests checked), one per LLM call, by the convention."""
    for demo in demo_records(30, seed=3):
        recorded = demo.decision
        requests = recorded_requests(recorded, demo.blobs.get)
        llm_steps = [s for s in recorded.steps if isinstance(s, LlmCall)]
        assert len(requests) == len(llm_steps)
        first = requests[0]
        assert (first.model, first.version) == (recorded.model.name, recorded.model.version)
        assert [m.role for m in first.messages] == ["system", "user"]
        assert [t.name for t in first.tools] == [t.name for t in recorded.model.tools]
        for earlier, later in itertools.pairwise(requests):
            added = later.messages[len(earlier.messages) :]
            assert added[0].role == "assistant"
            assert [m.tool_call_id for m in added[1:]] == [c.call_id for c in added[0].tool_calls]


def test_recorded_requests_follow_the_convention() -> None:
    """Each LLM call's request: the prompt, then every earlier call's answer with the tool
    calls after it, and their results (or errors) as compact JSON. A tool call made before
    any LLM call was the service's own and is not part of the conversation."""
    timeout = StepError(type="timeout", message="no answer in 2 s")
    recorded = decision(
        Steps()
        .tool("prefetch", {"id": 1}, {"ok": True})
        .llm("checking the file")
        .tool("lookup", ASKED, FILE)
        .tool("fetch_history", ASKED, error=timeout)
        .llm(),
        decided=FILE,
        text=compact(FILE),
        temperature=0.3,
        top_k=5,
        seed=9,
        stop_sequences=["END"],
    )

    first, second = recorded_requests(recorded, no_blobs)

    system, user = (
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(role="user", content=USER),
    )
    assert first.messages == [system, user]
    assert second.messages == [
        system,
        user,
        ChatMessage(
            role="assistant",
            content="checking the file",
            tool_calls=[
                RequestedToolCall(call_id="call_recorded_2", name="lookup", arguments=ASKED),
                RequestedToolCall(call_id="call_recorded_3", name="fetch_history", arguments=ASKED),
            ],
        ),
        ChatMessage(role="tool", content=compact(FILE), tool_call_id="call_recorded_2"),
        ChatMessage(
            role="tool",
            content='{"error":{"type":"timeout","message":"no answer in 2 s"}}',
            tool_call_id="call_recorded_3",
        ),
    ]
    for request in (first, second):
        assert (request.model, request.version) == ("scorer", "v1")
        assert [t.name for t in request.tools] == ["lookup", "fetch_history"]
        assert request.tools[0].parameters == LOOKUP.parameters
        assert (request.temperature, request.top_k, request.seed) == (0.3, 5, 9)
        assert (request.top_p, request.max_tokens, request.stop_sequences) == (None, None, ["END"])
        assert request.inputs == recorded.inputs
