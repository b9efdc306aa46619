"""A loan service instrumented with OpenTelemetry only: no ledger SDK, no signing key.

`assess` is ordinary business code: it reads the applicant's credit bureau report (a tool
run it traces by hand, as services commonly do) and asks a model for an assessment
through the ordinary `openai` client. The client is instrumented by the official
OpenTelemetry instrumentation (`opentelemetry-instrumentation-openai-v2`), and the SDK's
OTLP/HTTP exporters send the spans, and the messages the instrumentation logs as events,
straight to `prov serve` (`POST /v1/traces` and `/v1/logs`). Each `loan.approve` span with
its children becomes one decision, which the ledger builds and signs on arrival
(ledger-attested), with the model call, the tool run, the messages and usage as its steps.

    python examples/otel_openai.py

The only ledger-specific parts are the endpoint and its API key (any OTLP exporter can
send them with ``OTEL_EXPORTER_OTLP_HEADERS``), and two optional span attributes:
``prov.subject`` (who the decision is about) and ``prov.inputs``. It talks to the demo
models of `prov models serve` (OpenAI wire format). See examples/README.md for the setup.
"""

from __future__ import annotations

import json
import os
import time

import openai
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

LEDGER = os.environ.get("PROV_URL", "http://127.0.0.1:8080")
MODELS = os.environ.get("MODELS_URL", "http://127.0.0.1:8090/v1")

# The demo loan model's instructions (`prov models serve` answers these as a credit analyst).
SYSTEM = (
    "You are a credit analyst assessing personal loan applications. Decline when the bureau "
    "score is below 640, the debt-to-income ratio is above 0.43, there is more than one "
    "delinquency in 24 months, or the monthly installment exceeds 30% of verified net "
    "income. Otherwise approve at an APR of 7.9 + 0.04 x (800 - score) + 6 x DTI + 0.75 per "
    "delinquency. Write <assessment>, one line of reasoning, the JSON "
    '{"approved", "apr"}, then </assessment>.'
)

APPLICATIONS = [
    {"application_id": "LA-2001", "amount": "4000.00", "term_months": 24, "score": 721},
    {"application_id": "LA-2002", "amount": "9000.00", "term_months": 12, "score": 602},
    {"application_id": "LA-2003", "amount": "2500.00", "term_months": 36, "score": 688},
]


def telemetry() -> tuple[TracerProvider, LoggerProvider]:
    """OpenTelemetry as any service sets it up, exporting to the ledger over OTLP/HTTP."""
    headers = {"Authorization": f"Bearer {os.environ['PROV_API_KEY']}"}
    resource = Resource.create({"service.name": "loan-underwriter"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{LEDGER}/v1/traces", headers=headers))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{LEDGER}/v1/logs", headers=headers))
    )
    return tracer_provider, logger_provider


def bureau_report(score: int) -> dict[str, object]:
    """Stands in for the credit bureau's API."""
    return {"score": score, "dti": 0.31, "delinquencies_24m": 0 if score > 650 else 2}


def assess(client: openai.OpenAI, tracer_provider: TracerProvider, app: dict[str, object]) -> str:
    """One loan decision; returns the id the ledger gives it."""
    tracer = tracer_provider.get_tracer("loan-underwriter")
    with tracer.start_as_current_span("loan.approve") as decision:
        decision.set_attribute("prov.subject", f"applicant-{app['application_id']}")
        decision.set_attribute("prov.inputs", json.dumps(app))
        with tracer.start_as_current_span("execute_tool credit_bureau") as tool:
            report = bureau_report(int(str(app["score"])))
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "credit_bureau")
            tool.set_attribute(
                "gen_ai.tool.call.arguments", json.dumps({"id": app["application_id"]})
            )
            tool.set_attribute("gen_ai.tool.call.result", json.dumps(report))
        application = {k: v for k, v in app.items() if k != "score"}
        user = "\n".join(
            [
                f"Assess personal loan application {app['application_id']}.",
                f"Application: {json.dumps(application)}",
                f"Credit bureau report: {json.dumps(report)}",
                'Verified income: {"monthly_net": "3400.00"}',
            ]
        )
        answer = client.chat.completions.create(
            model="gpt-4.1-mini",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
            temperature=0,
            stop=["</assessment>"],
        )
        print(f"{app['application_id']}: {answer.choices[0].message.content!r}")
        context = decision.get_span_context()
    return f"otlp-{context.trace_id:032x}-{context.span_id:016x}"


def main() -> None:
    # The instrumentation records message content only when asked to.
    os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    tracer_provider, logger_provider = telemetry()
    OpenAIInstrumentor().instrument(
        tracer_provider=tracer_provider, logger_provider=logger_provider
    )
    client = openai.OpenAI(base_url=MODELS, api_key="demo")
    ids = [assess(client, tracer_provider, app) for app in APPLICATIONS]
    logger_provider.shutdown()  # flushes: the messages go before their spans
    tracer_provider.shutdown()
    time.sleep(1.5)  # the ledger assembles a trace once it has been quiet for a second
    for record_id in ids:
        print(f"decision {record_id}")
        print(f"  page:   {LEDGER}/ui/decisions/{record_id}")
        print(f"  why:    prov why {record_id} --tenant acme")
        print(f"  replay: prov replay {record_id} --tenant acme --mode deterministic")


if __name__ == "__main__":
    main()
