"""The demo models over real HTTP, through the real providers, and `prov demo`'s blobs.

No real model provider is reachable here. The product's own local model server
(`service.demo.model_server` serving `service.demo.models`, what `prov models serve` runs) speaks
the OpenAI and Anthropic wire protocols on a loopback port, and the providers call it
through the shipped registry, examples/replay-registry.toml, pointed at that port. The
demo uses both formats: OpenAI for orders and payment retries, Anthropic for loans.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.records.decision_text import decision_from_text
from ledger.records.replay import ReplayRecord
from query.audit.why import why_report
from replay.engine.engine import ReplayPlan, replay_decision
from replay.engine.requests import recorded_requests, recorded_run
from replay.providers import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    ProviderPool,
    Registry,
    ToolCall,
    ToolDefinition,
    load_registry,
)
from replay.providers.anthropic_messages import build_payload as anthropic_payload
from replay.providers.openai_compat import build_payload as openai_payload
from service.demo.model_server import Answer, Model, respond
from service.demo.models import SNAPSHOTS, demo_app, demo_model
from service.demo.scenarios import SCENARIOS, DemoRecord, demo_records
from tests.model_servers import LoopbackServer, unused_port
from tests.support import PROV, prov
from tests.test_export_helpers import stored_decisions

T = TypeVar("T")
REGISTRY = Path(__file__).resolve().parent.parent / "examples" / "replay-registry.toml"
RECORDS = list(demo_records(60, seed=23))
# The newer model each scenario's upgrade would switch to.
NEWER = {
    "order.route": "gpt-5-mini",
    "loan.approve": "claude-sonnet-4-5",
    "payment.retry": "gpt-5-mini",
}
LEAF = bytes(32)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(demo_app()) as started:
        yield started


@pytest.fixture(scope="module")
def registry(server: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The shipped registry, pointed at this server's port instead of 8090."""
    shipped = REGISTRY.read_text(encoding="utf-8")
    assert 'base_url = "http://127.0.0.1:8090' in shipped
    path = tmp_path_factory.mktemp("registry") / "replay-registry.toml"
    path.write_text(shipped.replace("127.0.0.1:8090", f"127.0.0.1:{server.port}"), "utf-8")
    return load_registry(path)


async def _ask_all(
    registry: Registry, requests: list[ChatRequest], *, stream: bool = False
) -> list[ChatResponse]:
    async with ProviderPool(registry, env={}) as pool:
        return list(await asyncio.gather(*(pool.complete(r, stream=stream) for r in requests)))


async def _replay_all(
    registry: Registry, plans: list[tuple[DemoRecord, ReplayPlan]]
) -> list[ReplayRecord]:
    async with ProviderPool(registry, env={}) as pool:
        replays = (
            replay_decision(
                record.decision,
                leaf_hash=LEAF,
                plan=plan,
                pool=pool,
                blobs=record.blobs.get,
                record_id=f"replay-{index:04d}",
            )
            for index, (record, plan) in enumerate(plans)
        )
        return list(await asyncio.gather(*replays))


# The recorded snapshots answer as recorded ------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_recorded_snapshots_ask_for_the_recorded_tool_calls_and_decide_alike(
    registry: Registry, stream: bool
) -> None:
    """Each recorded LLM call's request, rebuilt by the replay convention with the recorded
    tool results fed back, gets the recorded text and tool calls from the recorded model."""
    asked: list[tuple[DemoRecord, int, ChatRequest]] = [
        (record, k, request)
        for record in RECORDS
        for k, request in enumerate(recorded_requests(record.decision, record.blobs.get))
    ]
    answers = run(_ask_all(registry, [request for _, _, request in asked], stream=stream))
    wire = {"openai": "demo-openai", "anthropic": "demo-anthropic"}
    formats: Counter[str] = Counter()
    for (record, k, _), answer in zip(asked, answers, strict=True):
        decision = record.decision
        call = recorded_run(decision).calls[k]
        assert [(c.name, c.arguments) for c in answer.tool_calls] == [
            (tool.call.name, tool.call.arguments) for tool in call.tools
        ], (decision.id, k)
        assert answer.text == call.text, (decision.id, k)
        assert answer.finish_reason == call.finish_reason
        # The server counts tokens as the records do; hidden reasoning it does not report.
        assert call.usage is not None
        assert answer.input_tokens == call.usage.input_tokens
        reasoning = call.usage.reasoning_output_tokens or 0
        assert answer.output_tokens == call.usage.output_tokens - reasoning
        assert answer.model_version == decision.model.version  # the dated snapshot answered
        assert answer.provider == wire[decision.model.provider]
        if decision.model.provider == "openai":
            assert answer.fingerprint == decision.model.fingerprint
        formats[answer.provider] += 1
        if not call.tools:  # the final call states the recorded decision
            assert decision_from_text(answer.text) == decision.output.decision
    assert set(formats) == {"demo-openai", "demo-anthropic"}


def test_a_pinned_replay_of_every_demo_record_is_identical(registry: Registry) -> None:
    pinned = ReplayPlan(mode="pinned")
    replays = run(_replay_all(registry, [(record, pinned) for record in RECORDS]))
    for record, replay in zip(RECORDS, replays, strict=True):
        assert replay.verdict == "identical", (record.decision.id, replay.error, replay.divergence)
        assert replay.output is not None
        assert replay.output.decision == record.decision.output.decision
        assert replay.model.version == record.decision.model.version
        assert replay.usage is not None
        assert record.decision.usage is not None
        assert replay.diff.input_tokens.after == replay.diff.input_tokens.before


# The newer snapshots decide some records differently ---------------------------------------


def test_the_newer_models_change_some_records_and_not_all(registry: Registry) -> None:
    records = list(demo_records(150, seed=29))
    plans = [
        (record, ReplayPlan(mode="counterfactual", model=NEWER[record.decision.decision_type]))
        for record in records
    ]
    replays = run(_replay_all(registry, plans))
    verdicts: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    for record, replay in zip(records, replays, strict=True):
        scenario = record.decision.decision_type
        verdicts[(scenario, replay.verdict)] += 1
        before = record.decision.output.decision
        after = replay.output.decision if replay.output else None
        if replay.verdict == "diverged":
            assert replay.divergence is not None
            kinds[replay.divergence.kind] += 1
        elif replay.verdict == "changed":
            assert after is not None
            # Each upgrade changes decisions its own way.
            if scenario == "order.route":
                assert (before["carrier"], after["carrier"]) == ("FedEx", "UPS")
            elif scenario == "loan.approve":
                assert (before["approved"], after["approved"]) == (True, False)
            else:
                assert after["at"] > before["at"]  # the same offset: the later retry sorts last
        assert replay.verdict != "failed", replay.error
    for scenario in SCENARIOS:
        total = sum(n for (s, _), n in verdicts.items() if s == scenario)
        differ = verdicts[(scenario, "changed")] + verdicts[(scenario, "diverged")]
        assert 0.15 <= differ / total <= 0.45, (scenario, verdicts)
    differ = sum(n for (_, verdict), n in verdicts.items() if verdict in ("changed", "diverged"))
    assert 0.2 <= differ / len(records) <= 0.4, verdicts
    assert verdicts[("loan.approve", "diverged")] == 0  # no tools to diverge on
    assert set(kinds) == {"other_tool", "other_arguments", "ended_early"}


def test_aliases_answer_as_their_snapshot_and_unknown_models_are_not_found(
    registry: Registry, server: LoopbackServer
) -> None:
    record = next(r for r in RECORDS if r.decision.decision_type == "order.route")
    first = recorded_requests(record.decision, record.blobs.get)[0]
    [alias, newer] = run(
        _ask_all(
            registry,
            [
                msgspec.structs.replace(first, version=None),  # the alias route
                msgspec.structs.replace(first, model="gpt-5-mini", version=None),
            ],
        )
    )
    assert alias.model_version == "gpt-4.1-mini-2025-04-14"
    assert newer.model_version == "gpt-5-mini-2025-08-07"
    assert [snapshot.name for snapshot in SNAPSHOTS if snapshot.newer] == [
        "gpt-5-mini-2025-08-07",
        "claude-sonnet-4-5-20250929",
    ]
    question = {"model": "gpt-9", "messages": [{"role": "user", "content": "hello"}]}
    openai = httpx.post(f"{server.openai_base_url}/chat/completions", json=question)
    assert openai.status_code == 404
    assert openai.json()["error"]["code"] == "model_not_found"
    anthropic = httpx.post(
        f"{server.anthropic_base_url}/v1/messages",
        json=question | {"max_tokens": 16},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert anthropic.status_code == 404
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: gpt-9"},
    }


def test_requests_the_demo_models_cannot_use_get_an_answer_saying_so() -> None:
    record = next(r for r in RECORDS if r.decision.decision_type == "loan.approve")
    request = recorded_requests(record.decision, record.blobs.get)[0]
    system, user = request.messages
    garbled = user.content.replace('"score":', '"points":')  # the bureau report, misnamed
    cases = [
        ([system, msgspec.structs.replace(user, content=garbled)], "incomplete or malformed"),
        ([ChatMessage(role="user", content="What is the weather?")], "I can only route orders"),
    ]
    for messages, expected in cases:
        asked = msgspec.structs.replace(request, model="claude-sonnet-4", messages=messages)
        payload = anthropic_payload(asked, "claude-sonnet-4", default_max_tokens=64, stream=False)
        reply = respond(
            "POST",
            "/v1/messages",
            {"anthropic-version": "2023-06-01"},
            msgspec.json.encode(payload),
            model=demo_model,
        )
        assert reply.status == 200
        [said] = msgspec.json.decode(reply.body)["content"]
        assert expected in said["text"]


# The server reads what the providers write ------------------------------------------------


def _capture() -> tuple[list[ChatRequest], Model]:
    seen: list[ChatRequest] = []

    def model(request: ChatRequest) -> Answer:
        seen.append(request)
        return Answer(text="ok")

    return seen, model


_texts = st.text(max_size=30)
_arguments = st.dictionaries(
    st.text(min_size=1, max_size=8), st.none() | st.booleans() | st.integers() | _texts, max_size=3
)


@st.composite
def _conversations(draw: st.DrawFn) -> list[ChatMessage]:
    """A system prompt, then user turns, assistant turns and the answers to their tools."""
    messages = [ChatMessage(role="system", content=draw(_texts))]
    for turn in range(draw(st.integers(min_value=1, max_value=4))):
        messages.append(ChatMessage(role="user", content=draw(_texts)))
        names = draw(st.lists(st.sampled_from(["lookup", "quote", "check"]), max_size=3))
        calls = [
            ToolCall(call_id=f"call_{turn}_{n}", name=name, arguments=draw(_arguments))
            for n, name in enumerate(names)
        ]
        messages.append(ChatMessage(role="assistant", content=draw(_texts), tool_calls=calls))
        messages += [
            ChatMessage(role="tool", content=draw(_texts), tool_call_id=call.call_id)
            for call in calls
        ]
    return messages


_requests = st.builds(
    ChatRequest,
    model=st.just("any-model"),
    messages=_conversations(),
    tools=st.lists(
        st.builds(
            ToolDefinition,
            name=st.sampled_from(["lookup", "quote"]),
            description=st.none() | st.text(min_size=1, max_size=10),
            parameters=st.just({"type": "object", "properties": {"id": {"type": "string"}}}),
        ),
        max_size=2,
    ),
    temperature=st.none() | st.floats(min_value=0, max_value=2),
    top_p=st.none() | st.floats(min_value=0, max_value=1),
    top_k=st.none() | st.integers(min_value=1, max_value=100),
    max_tokens=st.integers(min_value=1, max_value=4096),
    stop_sequences=st.lists(st.text(min_size=1, max_size=5), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(request=_requests)
def test_the_server_reads_the_conversation_each_provider_writes(request: ChatRequest) -> None:
    seen, model = _capture()
    sent = [
        ("/v1/chat/completions", {}, openai_payload(request, "any-model", stream=False)),
        (
            "/v1/messages",
            {"anthropic-version": "2023-06-01"},
            anthropic_payload(request, "any-model", default_max_tokens=1024, stream=False),
        ),
    ]
    for path, headers, payload in sent:
        reply = respond("POST", path, headers, msgspec.json.encode(payload), model=model)
        assert reply.status == 200, reply.body
    through_openai, through_anthropic = seen
    assert through_openai == request
    # The Messages API has no seed; everything else arrives as sent.
    assert through_anthropic == msgspec.structs.replace(request, seed=None)


@given(
    text=st.text(max_size=40),
    stops=st.lists(st.text(min_size=1, max_size=4), max_size=3),
)
def test_the_answer_stops_at_the_first_stop_sequence(text: str, stops: list[str]) -> None:
    def model(request: ChatRequest) -> Answer:
        return Answer(text=text)

    body = {
        "model": "m",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "go"}],
        "stop_sequences": stops,
    }
    reply = respond(
        "POST",
        "/v1/messages",
        {"anthropic-version": "2023-06-01"},
        msgspec.json.encode(body),
        model=model,
    )
    message = msgspec.json.decode(reply.body)
    said = message["content"][0]["text"]
    hits = [text.index(stop) for stop in stops if stop in text]
    assert said == (text[: min(hits)] if hits else text)
    assert message["stop_reason"] == ("stop_sequence" if hits else "end_turn")
    if hits:
        assert message["stop_sequence"] in stops
        assert text[min(hits) :].startswith(message["stop_sequence"])


# `prov models serve` -------------------------------------------------------------------


def test_prov_models_serve_prints_its_urls_answers_and_stops_on_interrupt() -> None:
    port = unused_port()
    serving = subprocess.Popen(
        [PROV, "models", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serving.stdout is not None
        printed = [serving.stdout.readline() for _ in range(2)]
        assert printed == [
            f"OpenAI chat completions: http://127.0.0.1:{port}/v1\n",
            f"Anthropic Messages:      http://127.0.0.1:{port}\n",
        ]
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/messages",
            json={
                "model": "claude-sonnet-4",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hello"}],
            },
            headers={"anthropic-version": "2023-06-01"},
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.json()["model"] == "claude-sonnet-4-20250514"

        taken = subprocess.run(
            [PROV, "models", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert taken.returncode == 1
        assert taken.stderr == f"prov: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    finally:
        serving.send_signal(signal.SIGINT)  # Ctrl+C: a graceful stop, exit status 130
        assert serving.wait(timeout=20) == 130


# `prov demo` stores every blob its records reference ------------------------------------


def test_prov_demo_stores_every_referenced_blob(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    done = prov(["demo", "--records", "9", "--seed", "5"], db=db_url, key=key_path)
    assert done.code == 0, done.err
    held = {digest: content for r in demo_records(9, seed=5) for digest, content in r.blobs.items()}
    seen: Counter[str] = Counter()
    with ledger.engine.connect() as connection:
        for _, decision in stored_decisions(ledger.engine):
            report = why_report(
                connection, ledger.verifier, ledger.origin, "acme", decision.id, now_us=now_micros()
            )
            for blob in report["verification"]["blobs"]:
                assert blob["status"] == "present", blob
                assert blob["size"] == len(held[blob["digest"]])
                seen[blob["pointer"]] += 1
    # Loans hold their bureau report, income and messages, orders their messages.
    assert seen == {"/context/0/blob": 3, "/context/1/blob": 3, "/prompt/messages_blob": 6}
    for digest, content in held.items():
        assert digest == "sha256:" + hashlib.sha256(content).hexdigest()
