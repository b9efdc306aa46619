"""What real instrumentations emit, through the real OpenTelemetry SDK, into `prov serve`.

The `openai` and `anthropic` Python clients call the local wire-protocol model server (no
real provider is reachable here; `tests/model_servers.py` speaks both providers'
protocols), instrumented by the official OpenTelemetry instrumentation
(`opentelemetry-instrumentation-openai-v2`, messages captured as log events) or by
OpenInference's, for OpenAI and for Anthropic (messages as indexed span attributes). The
SDK's OTLP/HTTP exporters send spans and logs to a live `prov serve`; the decision must
appear in the why-report with every step, ledger-attested, and replay `identical` in
deterministic mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from openinference.instrumentation.anthropic import AnthropicInstrumentor
from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OfficialInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.http_server import Server, prepared_server
from tests.model_servers import ModelServer
from tests.otlp_support import wait_for_why
from tests.support import prov

pytestmark = pytest.mark.slow

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "check_credit",
            "description": "The applicant's credit score",
            "parameters": {
                "type": "object",
                "properties": {"applicant": {"type": "string"}},
                "required": ["applicant"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def ledger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("otel")
    running = prepared_server(
        str(directory / "ledger.db"), directory, PROV_OTLP_SETTLE_SECONDS="0.3"
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def models() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def _providers(server: Server) -> tuple[TracerProvider, LoggerProvider]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    resource = Resource.create({"service.name": "loan-service"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", headers=headers))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{server.url}/v1/logs", headers=headers))
    )
    return tracer_provider, logger_provider


def _approve(client: openai.OpenAI, tracer_provider: TracerProvider) -> tuple[str, str]:
    """A loan decision with a tool call, as a service instrumented with OpenTelemetry
    only makes it; returns the trace and root span ids."""
    tracer = tracer_provider.get_tracer("loan-service")
    with tracer.start_as_current_span("loan.approve") as root:
        root.set_attribute("prov.subject", "applicant-7")
        messages: list[Any] = [
            {"role": "system", "content": "You approve small loans."},
            {"role": "user", "content": "Applicant A-7 asks for 800 EUR."},
        ]
        first = client.chat.completions.create(
            model="scorer-v1", messages=messages, tools=TOOLS, temperature=0, seed=7
        )
        calls = first.choices[0].message.tool_calls or []
        assert calls, "the test model calls the first tool it is offered"
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        for call in calls:
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"score": 712})}
            )
        second = client.chat.completions.create(
            model="scorer-v1", messages=messages, tools=TOOLS, temperature=0, seed=7
        )
        assert second.choices[0].message.content
        context = root.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _approve_with_claude(
    client: anthropic.Anthropic, tracer_provider: TracerProvider
) -> tuple[str, str]:
    """The same decision through Anthropic's Messages API."""
    tracer = tracer_provider.get_tracer("loan-service")
    tools = [
        {
            "name": tool["function"]["name"],
            "description": tool["function"]["description"],
            "input_schema": tool["function"]["parameters"],
        }
        for tool in TOOLS
    ]
    with tracer.start_as_current_span("loan.approve") as root:
        root.set_attribute("prov.subject", "applicant-7")
        system = "You approve small loans."
        messages: list[Any] = [{"role": "user", "content": "Applicant A-7 asks for 800 EUR."}]
        first = client.messages.create(
            model="scorer-v1", max_tokens=200, system=system, messages=messages, tools=tools
        )
        asked = [block for block in first.content if block.type == "tool_use"]
        assert asked, "the test model calls the first tool it is offered"
        messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": asked[0].id,
                        "content": json.dumps({"score": 712}),
                    }
                ],
            }
        )
        client.messages.create(
            model="scorer-v1", max_tokens=200, system=system, messages=messages, tools=tools
        )
        context = root.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _check(
    server: Server, trace_id: str, span_id: str, tmp_path: Path, provider: str = "openai"
) -> dict[str, Any]:
    record_id = f"otlp-{trace_id}-{span_id}"
    report = wait_for_why(server.url, server.admin_key, record_id)
    decision = report["decision"]
    assert [step["kind"] for step in decision["steps"]] == ["llm_call", "tool_call", "llm_call"]
    assert decision["service"] == "loan-service"
    assert decision["decision_type"] == "loan.approve"
    assert decision["subject"] == "applicant-7"
    assert decision["model"]["provider"] == provider
    assert decision["model"]["name"] == "scorer-v1"
    assert decision["prompt"]["messages"][0] == {
        "role": "system",
        "content": "You approve small loans.",
    }
    tool = decision["steps"][1]
    assert tool["name"] == "check_credit"
    assert tool["result"] == {"score": 712}
    assert decision["output"]["text"].startswith("scorer-v1:")
    assert "prov.not_replayable" not in decision["attributes"]
    assert report["evidence"]["signing_key"]["service"] == "prov-replay"
    replayed = prov(
        ["replay", record_id, "--tenant", "acme", "--mode", "deterministic", "--json"],
        db=server.db_url,
        key=server.key_file,
    )
    assert replayed.code == 0, replayed.err
    assert json.loads(replayed.out)["verdict"] == "identical"
    return decision


def _decide_instrumented(
    server: Server, models: ModelServer, instrumentor: Any, **providers: bool
) -> tuple[str, str]:
    """One decision made with `instrumentor` on the client, exported and flushed; with
    `claude`, through the anthropic client."""
    tracer_provider, logger_provider = _providers(server)
    wanted: dict[str, Any] = {"tracer_provider": tracer_provider}
    if providers.get("logs"):
        wanted["logger_provider"] = logger_provider
    instrumentor.instrument(**wanted)
    try:
        if providers.get("claude"):
            claude = anthropic.Anthropic(base_url=models.anthropic_base_url, api_key="test")
            return _approve_with_claude(claude, tracer_provider)
        client = openai.OpenAI(base_url=models.openai_base_url, api_key="test")
        return _approve(client, tracer_provider)
    finally:
        instrumentor.uninstrument()
        logger_provider.shutdown()
        tracer_provider.shutdown()


def test_the_official_openai_instrumentation_makes_a_replayable_decision(
    ledger_server: Server, models: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Message content is opt-in; this instrumentation sends it as log events.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    trace_id, span_id = _decide_instrumented(
        ledger_server, models, OfficialInstrumentor(), logs=True
    )
    decision = _check(ledger_server, trace_id, span_id, tmp_path)
    assert decision["model"]["seed"] == 7
    assert decision["steps"][0]["response_id"]


def test_openinference_instrumentation_makes_a_replayable_decision(
    ledger_server: Server, models: ModelServer, tmp_path: Path
) -> None:
    trace_id, span_id = _decide_instrumented(ledger_server, models, OpenInferenceInstrumentor())
    decision = _check(ledger_server, trace_id, span_id, tmp_path)
    # OpenInference records the tools offered, so a pinned replay would offer them too.
    assert [tool["name"] for tool in decision["model"]["tools"]] == ["check_credit"]


def test_openinference_anthropic_instrumentation_makes_a_replayable_decision(
    ledger_server: Server, models: ModelServer, tmp_path: Path
) -> None:
    trace_id, span_id = _decide_instrumented(
        ledger_server, models, AnthropicInstrumentor(), claude=True
    )
    decision = _check(ledger_server, trace_id, span_id, tmp_path, provider="anthropic")
    assert decision["model"]["tools"][0]["parameters"]["required"] == ["applicant"]
    assert decision["steps"][0]["finish_reason"] == "tool_use"
