"""The HTTP providers over real loopback HTTP, both wire formats, plain and streamed.

No real provider is reachable here; `tests.model_servers.ModelServer` speaks each
provider's wire protocol as a deterministic model. These tests check what goes on the
wire (the server records every request) and what comes back in the common response shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from replay.providers import (
    BadResponse,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    MissingApiKey,
    ProviderPool,
    RequestRejected,
    ToolCall,
    ToolDefinition,
    UnknownModel,
    parse_registry,
)
from tests import replay_support
from tests.model_servers import API_KEY, ENV, ModelServer, registry_toml

T = TypeVar("T")

CREDIT_TOOL = ToolDefinition(
    name="get_credit_report",
    description="Look up an applicant's credit report",
    parameters={
        "type": "object",
        "properties": {"applicant_id": {"type": "string"}, "months": {"type": "integer"}},
        "required": ["applicant_id"],
    },
)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# The local model server fixtures of `tests.replay_support`, bound here for pytest to find.
model_server = replay_support.model_server
srv = replay_support.srv


def ask(
    server: ModelServer,
    request: ChatRequest,
    *,
    stream: bool = False,
    env: dict[str, str] | None = None,
) -> ChatResponse:
    async def go() -> ChatResponse:
        registry = parse_registry(registry_toml(server), source="test-registry.toml")
        async with ProviderPool(registry, env=ENV if env is None else env) as pool:
            return await pool.complete(request, stream=stream)

    return run(go())


def question(model: str, version: str | None = None, **extra: Any) -> ChatRequest:
    return ChatRequest(
        model=model,
        version=version,
        messages=[
            ChatMessage(role="system", content="You score loan applications."),
            ChatMessage(role="user", content="applicant A-17 asks for 12000"),
        ],
        **extra,
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_openai_text_answer_and_wire_request(srv: ModelServer, stream: bool) -> None:
    request = question(
        "scorer",
        "v1",
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        seed=7,
        max_tokens=64,
        stop_sequences=["END"],
    )
    response = ask(srv, request, stream=stream)

    assert response.text.startswith("scorer-v1: ")
    assert response.finish_reason == "stop"
    assert response.tool_calls == []
    assert response.model == "scorer"
    assert response.version == "v1"
    assert response.provider == "oa"
    assert response.model_version == "scorer-v1"
    assert response.fingerprint is not None
    assert response.fingerprint.startswith("fp_")
    assert response.input_tokens == 9  # words in the two messages
    assert response.output_tokens == len(response.text.split())
    assert response.attempts == 1
    assert response.latency_ms >= 0
    assert (response.first_token_ms is not None) is stream

    [seen] = srv.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    body = seen.body
    assert body["model"] == "scorer-v1"
    assert body["messages"][0] == {"role": "system", "content": "You score loan applications."}
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 40)
    assert (body["seed"], body["max_tokens"], body["stop"]) == (7, 64, ["END"])
    assert body["stream"] is stream
    assert ("stream_options" in body) is stream
    if stream:
        assert body["stream_options"] == {"include_usage": True}


def test_unset_parameters_are_not_sent(srv: ModelServer) -> None:
    ask(srv, question("chat"))
    body = srv.requests[0].body
    assert body["model"] == "chat-model"
    for absent in ("temperature", "top_p", "top_k", "seed", "max_tokens", "stop", "tools"):
        assert absent not in body


def test_streamed_and_plain_answers_agree(srv: ModelServer) -> None:
    for model, version in (("scorer", "v2"), ("writer", "2024-10")):
        request = question(model, version, tools=[CREDIT_TOOL])
        plain = ask(srv, request)
        streamed = ask(srv, request, stream=True)
        for field in (
            "text",
            "tool_calls",
            "finish_reason",
            "input_tokens",
            "output_tokens",
            "model_version",
            "fingerprint",
            "cost",
        ):
            assert getattr(plain, field) == getattr(streamed, field), (model, field)
        plain_answer = ask(srv, question(model, version))
        streamed_answer = ask(srv, question(model, version), stream=True)
        assert plain_answer.text == streamed_answer.text != ""


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["scorer", "writer"])
def test_tool_call_round_trip(srv: ModelServer, model: str, stream: bool) -> None:
    first = ask(srv, question(model, "v1", tools=[CREDIT_TOOL]), stream=stream)

    assert first.finish_reason == ("tool_calls" if model == "scorer" else "tool_use")
    assert first.text == ""
    [call] = first.tool_calls
    assert call.name == "get_credit_report"
    user_text = "applicant A-17 asks for 12000"
    assert call.arguments == {"applicant_id": user_text, "months": len(user_text)}
    assert call.call_id

    result = '{"score": 702, "defaults": 0}'
    follow_up = ChatRequest(
        model=model,
        version="v1",
        messages=[
            *question(model).messages,
            ChatMessage(role="assistant", tool_calls=[call]),
            ChatMessage(role="tool", content=result, tool_call_id=call.call_id),
        ],
        tools=[CREDIT_TOOL],
    )
    second = ask(srv, follow_up, stream=stream)
    assert second.tool_calls == []
    assert second.text.endswith(f"given {result}")
    assert second.finish_reason in ("stop", "end_turn")

    sent = srv.requests[-1].body
    if model == "scorer":
        assistant, tool = sent["messages"][2], sent["messages"][3]
        assert assistant["content"] is None
        assert assistant["tool_calls"][0]["id"] == call.call_id
        assert assistant["tool_calls"][0]["function"]["name"] == "get_credit_report"
        arguments = assistant["tool_calls"][0]["function"]["arguments"]
        assert isinstance(arguments, str)  # the format sends arguments as JSON text
        assert tool == {"role": "tool", "content": result, "tool_call_id": call.call_id}
        assert sent["tools"][0]["function"]["parameters"] == CREDIT_TOOL.parameters
    else:
        assistant, tool = sent["messages"][1], sent["messages"][2]
        assert assistant["content"] == [
            {
                "type": "tool_use",
                "id": call.call_id,
                "name": "get_credit_report",
                "input": call.arguments,
            }
        ]
        assert tool == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.call_id, "content": result}],
        }
        assert sent["tools"][0]["input_schema"] == CREDIT_TOOL.parameters


def test_consecutive_tool_results_share_one_anthropic_user_turn(srv: ModelServer) -> None:
    calls = [
        ToolCall(call_id="toolu_1", name="get_credit_report", arguments={"applicant_id": "a"}),
        ToolCall(call_id="toolu_2", name="get_credit_report", arguments={"applicant_id": "b"}),
    ]
    request = ChatRequest(
        model="writer",
        version="v1",
        messages=[
            ChatMessage(role="user", content="compare a and b"),
            ChatMessage(role="assistant", content="Looking both up.", tool_calls=calls),
            ChatMessage(role="tool", content="a: 700", tool_call_id="toolu_1"),
            ChatMessage(role="tool", content="b: 640", tool_call_id="toolu_2"),
        ],
    )
    response = ask(srv, request)
    assert response.text.endswith("given b: 640")
    messages = srv.requests[0].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][0] == {"type": "text", "text": "Looking both up."}
    assert [b["tool_use_id"] for b in messages[2]["content"]] == ["toolu_1", "toolu_2"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_text_answer_and_wire_request(srv: ModelServer, stream: bool) -> None:
    request = question(
        "writer", "2024-10", temperature=0.0, top_k=5, seed=3, stop_sequences=["\n\nHuman"]
    )
    response = ask(srv, request, stream=stream)

    assert response.text.startswith("msg-test-2024-10: ")
    assert response.finish_reason == "end_turn"
    assert response.model_version == "msg-test-2024-10"
    assert response.input_tokens == 9
    assert response.output_tokens == len(response.text.split())
    assert response.response_id is not None
    assert response.response_id.startswith("msg_")

    [seen] = srv.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == API_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    body = seen.body
    assert body["system"] == "You score loan applications."
    assert body["messages"] == [{"role": "user", "content": "applicant A-17 asks for 12000"}]
    assert body["max_tokens"] == 1024  # the provider default fills the required member
    assert (body["temperature"], body["top_k"]) == (0.0, 5)
    assert body["stop_sequences"] == ["\n\nHuman"]
    assert "seed" not in body  # the Messages API has none
    assert body.get("stream", False) is stream


def test_versions_answer_differently_and_each_deterministically(srv: ModelServer) -> None:
    for model in ("scorer", "writer"):
        v1 = ask(srv, question(model, "v1"))
        v1_again = ask(srv, question(model, "v1"))
        v2 = ask(srv, question(model, "v2"))
        assert v1.text == v1_again.text
        assert v1.text != v2.text
        assert v1.model_version != v2.model_version
    assert [r.body["model"] for r in srv.requests] == [
        "scorer-v1",
        "scorer-v1",
        "scorer-v2",
        "msg-test-v1",
        "msg-test-v1",
        "msg-test-v2",
    ]


def test_a_version_route_beats_the_any_version_route(srv: ModelServer) -> None:
    v3 = ask(srv, question("scorer", "v3"))
    assert srv.requests[0].body["model"] == "scorer-v3"
    assert v3.currency == "EUR"  # the v3 route's own price


def test_price_table_bills_each_response(srv: ModelServer) -> None:
    scorer = ask(srv, question("scorer", "v1"))
    expected = (
        Decimal(scorer.input_tokens) * Decimal("2.50")
        + Decimal(scorer.output_tokens) * Decimal("10.00")
    ) / 1_000_000
    assert scorer.cost == expected
    assert scorer.currency == "USD"

    v3 = ask(srv, question("scorer", "v3"))
    assert (
        v3.cost
        == (
            Decimal(v3.input_tokens) * Decimal("0.15") + Decimal(v3.output_tokens) * Decimal("0.60")
        )
        / 1_000_000
    )

    writer = ask(srv, question("writer", "v1"), stream=True)
    assert writer.cost == (writer.input_tokens * 3 + writer.output_tokens * 15) / Decimal(10**6)

    unpriced = ask(srv, question("chat"))
    assert unpriced.cost is None
    assert unpriced.currency is None


@pytest.mark.parametrize("model", ["chat", "writer"])
def test_wrong_api_key_is_rejected_once_not_retried(srv: ModelServer, model: str) -> None:
    wrong = {"TEST_OPENAI_KEY": "sk-wrong", "TEST_ANTHROPIC_KEY": "sk-wrong"}
    with pytest.raises(RequestRejected) as caught:
        ask(srv, question(model, "v1"), env=wrong)
    assert caught.value.status == 401
    assert srv.request_count == 1
    message = str(caught.value)
    assert "\n" not in message
    assert "HTTP 401" in message
    # The provider's own reason is quoted from its error body.
    assert ("Incorrect API key" in message) or ("authentication_error: invalid" in message)


def test_missing_api_key_fails_before_any_request(srv: ModelServer) -> None:
    with pytest.raises(MissingApiKey, match="TEST_OPENAI_KEY is not set"):
        ask(srv, question("chat"), env={})
    assert srv.request_count == 0


def test_unknown_model_names_the_known_versions(srv: ModelServer) -> None:
    with pytest.raises(UnknownModel, match="no route for model 'nope'"):
        ask(srv, question("nope"))
    with pytest.raises(UnknownModel, match="needs a version"):
        ask(srv, question("scorer"))  # its any-version route puts {version} in the name
    assert srv.request_count == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["chat", "writer"])
def test_a_body_that_is_not_json_is_a_bad_response_not_retried(
    srv: ModelServer, model: str, stream: bool
) -> None:
    srv.script.garbage(times=3)
    with pytest.raises(BadResponse) as caught:
        ask(srv, question(model, "v1"), stream=stream)
    assert srv.request_count == 1
    assert caught.value.attempts == 1
    assert "\n" not in str(caught.value)
