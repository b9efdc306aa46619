"""`prov collector` end to end: a service's spans become producer-signed decisions.

A live `prov serve` holds the ledger, with a service key registered for tenant `acme` and
service `checkout`; `prov collector` runs as its own process with that key. Spans are made
by the real OpenTelemetry SDK and sent by its real OTLP/HTTP exporter
(opentelemetry-exporter-otlp-proto-http) to the collector: a root span heading the
decision and a chat child carrying ``gen_ai.*`` attributes, its messages as
``gen_ai.input.messages`` / ``gen_ai.output.messages`` JSON. What lands is read back from
the ledger's own database: the entry's envelope, signed by the service key, and its index
row, `producer-signed`.

Durability: spans the collector acknowledged while the ledger was down land once it is
back, and spans it acknowledged before it was killed with SIGKILL land once after it is
started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue
from sqlalchemy import Engine, func, select

from ledger.keys.signing import SigningKey, save_signing_key
from ledger.records import dsse
from ledger.records.decision import decode_decision
from ledger.storage.db import make_engine
from ledger.storage.schema import decisions, log_entries
from service.cli.collector import collector as collector_command
from service.cli.main import cli
from tests.http_server import TENANT, Server, free_port, prepared_server, wait_ready
from tests.support import PROV, register

SERVICE = "checkout"
LISTEN_TOKEN = "listen-token-for-tests"  # noqa: S105 - a test's own, guards nothing
ROOT = Path(__file__).resolve().parent.parent
SIDECAR = ROOT / "deploy" / "sidecar" / "collector.yaml"
T = TypeVar("T")


# --- the ledger, the collector and the spans -----------------------------------------------


@dataclass
class Ledger:
    server: Server
    engine: Engine
    key_file: Path
    keyid: str
    public_key: bytes
    api_key: str


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A running `prov serve` (SQLite) with the service key of acme/checkout registered and
    an ingest API key."""
    server = prepared_server(str(tmp_path / "ledger.db"), tmp_path)
    engine = make_engine(server.db_url)
    key = SigningKey.generate()
    key_file = tmp_path / "checkout.key"
    save_signing_key(key, key_file)
    keyid = register(engine, key, tenant=TENANT, service=SERVICE)
    server.start()
    try:
        yield Ledger(server, engine, key_file, keyid, key.public_key, server.api_key("ingest"))
    finally:
        server.stop()
        engine.dispose()


@dataclass
class Collector:
    """A `prov collector` process; `start` again after `kill` reuses its data directory."""

    args: list[str]
    data: Path
    log_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [PROV, "collector", *self.args, "--port", str(self.port), "--data", str(self.data)]

    def start(self, timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROV_")}
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_ready(f"{self.url}/readyz", self.process, self.log, timeout=timeout)

    def status(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/readyz", timeout=5)
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        return status

    def kill(self) -> None:
        """kill -9: no shutdown hook runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_file.read_text()[-3000:]


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Make collectors (not started) for `ledger`; each is stopped at the end."""
    made: list[Collector] = []

    def make(ledger: Ledger | None, *extra: str, ledger_url: str | None = None) -> Collector:
        args = [
            "--ledger-url",
            ledger_url or (ledger.server.url if ledger else f"http://127.0.0.1:{free_port()}"),
            "--api-key",
            ledger.api_key if ledger else "prov_unused",
            "--tenant",
            TENANT,
            "--service",
            SERVICE,
            "--key",
            str(ledger.key_file if ledger else _spare_key(tmp_path)),
            "--settle-seconds",
            "0.2",
            *extra,
        ]
        number = len(made)
        collector = Collector(args, tmp_path / f"collector-{number}", tmp_path / f"c{number}.log")
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.stop()


def _spare_key(tmp_path: Path) -> Path:
    path = tmp_path / "spare.key"
    if not path.exists():
        save_signing_key(SigningKey.generate(), path)
    return path


def genai_trace(decision_id: str) -> Sequence[ReadableSpan]:
    """One decision's spans, made by the OpenTelemetry SDK: a root span that names the
    decision and a chat span with GenAI attributes, as an instrumented model client makes.
    The resource's service name differs from the key's: the collector's service wins."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout-web"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.collector")
    root_attributes = {
        "prov.decision_type": "loan.approve",
        "prov.decision_id": decision_id,
        "prov.subject": "applicant-7",
        "prov.inputs": json.dumps({"amount": 1200, "term_months": 12}),
        "prov.output": json.dumps({"approved": True}),
    }
    chat_attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4.1-mini",
        "gen_ai.response.model": "gpt-4.1-mini-2025-04-14",
        "gen_ai.request.temperature": 0.0,
        "gen_ai.usage.input_tokens": 31,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "Approve 1200 over 12?"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "Approved."}],
                    "finish_reason": "stop",
                }
            ]
        ),
    }
    with (
        tracer.start_as_current_span("loan.approve", attributes=root_attributes),
        tracer.start_as_current_span(
            "chat gpt-4.1-mini", kind=SpanKind.CLIENT, attributes=chat_attributes
        ),
    ):
        pass
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert len(spans) == 2
    return spans


def export(collector: Collector, spans: Sequence[ReadableSpan], token: str | None = None) -> bool:
    """Send `spans` with the SDK's OTLP/HTTP exporter; True when the collector took them."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    exporter = OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces", headers=headers, timeout=10)
    try:
        return exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None and found is not False:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stored(ledger: Ledger, decision_id: str) -> tuple[int, str, bytes] | None:
    """(entries with this id, the index row's attestation, the envelope) once logged."""
    with ledger.engine.connect() as connection:
        count = connection.execute(
            select(func.count())
            .select_from(log_entries)
            .where(log_entries.c.tenant == TENANT, log_entries.c.record_id == decision_id)
        ).scalar_one()
        if count == 0:
            return None
        envelope = connection.execute(
            select(log_entries.c.envelope).where(log_entries.c.record_id == decision_id)
        ).scalar_one()
        attestation = connection.execute(
            select(decisions.c.attestation).where(decisions.c.record_id == decision_id)
        ).scalar_one()
    return count, attestation, bytes(envelope)


def assert_producer_signed(ledger: Ledger, decision_id: str, timeout: float = 30.0) -> None:
    count, attestation, envelope = wait_for(
        lambda: stored(ledger, decision_id), timeout, f"decision {decision_id} in the ledger"
    )
    assert count == 1
    assert attestation == "producer-signed"
    parsed = dsse.decode_envelope(envelope)
    assert [signature.keyid for signature in parsed.signatures] == [ledger.keyid]
    payload = dsse.payload_bytes(parsed)
    assert dsse.verify_envelope(parsed, payload, ledger.keyid, ledger.public_key)
    decision = decode_decision(payload)
    assert (decision.tenant, decision.service) == (TENANT, SERVICE)


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.slow
def test_spans_become_a_decision_signed_by_the_service_key(
    ledger: Ledger, collectors: Callable[..., Collector]
) -> None:
    collector = collectors(ledger)
    collector.start()
    assert export(collector, genai_trace("loan-0001"))

    assert_producer_signed(ledger, "loan-0001")
    _, _, envelope = stored(ledger, "loan-0001") or (0, "", b"")
    decision = decode_decision(dsse.payload_bytes(dsse.decode_envelope(envelope)))
    assert decision.decision_type == "loan.approve"
    assert decision.subject == "applicant-7"
    assert decision.inputs == {"amount": 1200, "term_months": 12}
    assert decision.output.decision == {"approved": True}
    assert decision.output.text == "Approved."
    assert decision.model.name == "gpt-4.1-mini"
    assert decision.usage is not None
    assert decision.usage.input_tokens == 31
    assert decision.attributes["otlp"]["service"] == "checkout-web"
    status = wait_for(
        lambda: (s := collector.status())["traces"].get("done") == 1 and s,
        10,
        "the trace marked done",
    )
    assert status["sent"]["appended"] == 1
    assert status["sent"]["rejected"] == 0


@pytest.mark.slow
def test_spans_taken_while_the_ledger_is_down_land_when_it_is_back(
    ledger: Ledger, collectors: Callable[..., Collector]
) -> None:
    ledger.server.stop()
    collector = collectors(ledger)
    collector.start()
    assert export(collector, genai_trace("loan-0002"))  # acknowledged with no ledger
    wait_for(lambda: collector.status()["sent"]["outages"] > 0, 30, "a failed send")
    assert stored(ledger, "loan-0002") is None
    assert collector.status()["traces"] == {"busy": 1}

    ledger.server.start()
    assert_producer_signed(ledger, "loan-0002", timeout=60)
    wait_for(lambda: collector.status()["traces"] == {"done": 1}, 10, "the trace done")


@pytest.mark.slow
def test_acknowledged_spans_survive_kill_9_and_land_once(
    ledger: Ledger, collectors: Callable[..., Collector]
) -> None:
    # Killed before it assembled the trace: it waits out a long quiet time first.
    first = collectors(ledger, "--settle-seconds", "30")
    first.start()
    assert export(first, genai_trace("loan-0003"))
    first.kill()
    assert stored(ledger, "loan-0003") is None
    first.args[first.args.index("30")] = "0.2"
    first.start()
    assert_producer_signed(ledger, "loan-0003")

    # Killed while it held the trace, sending it to a ledger that was down.
    ledger.server.stop()
    assert export(first, genai_trace("loan-0004"))
    wait_for(lambda: first.status()["traces"].get("busy") == 1, 30, "the trace claimed")
    first.kill()
    ledger.server.start()
    first.start()
    assert "1 traces a stopped collector had claimed are open again" in first.log()
    assert_producer_signed(ledger, "loan-0004")
    wait_for(lambda: first.status()["traces"] == {"done": 2}, 10, "both traces done")


@pytest.mark.slow
def test_a_listen_token_is_required_when_given_and_a_data_dir_has_one_collector(
    collectors: Callable[..., Collector],
) -> None:
    # No ledger: the spans are only stored, which is all an export's answer says.
    collector = collectors(None, "--listen-token", LISTEN_TOKEN)
    collector.start()
    spans = genai_trace("loan-0005")
    assert not export(collector, spans)
    assert not export(collector, spans, token=LISTEN_TOKEN[::-1])
    assert collector.status()["traces"] == {}
    assert export(collector, spans, token=LISTEN_TOKEN)
    assert sum(collector.status()["traces"].values()) == 1

    second = Collector(collector.args, collector.data, collector.log_file.with_suffix(".2"))
    run = subprocess.run(second.command(), capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert "is in use by another prov collector" in run.stderr


def _refused(*args: str) -> str:
    """The one-line error of `prov collector ARGS`, run in this process: exit status 2."""
    done = CliRunner().invoke(cli, ["collector", *args])
    assert done.exit_code == 2, done.output
    return done.output


def test_bad_options_are_refused_with_a_reason(tmp_path: Path) -> None:
    key = _spare_key(tmp_path)
    base = ["--ledger-url", "http://127.0.0.1:9", "--api-key", "k", "--tenant", TENANT]
    base += ["--service", SERVICE, "--key", str(key), "--data", str(tmp_path / "d")]
    assert "--listen-token" in _refused(*base, "--host", "0.0.0.0")  # noqa: S104
    assert "--tenant 'Acme!' is not a slug" in _refused(*base, "--tenant", "Acme!")
    assert "not an http:// or https:// URL" in _refused(*base, "--ledger-url", "prov:8080")
    assert "--key" in _refused(*base, "--key", str(tmp_path / "missing.key"))
    (tmp_path / "public.pem").write_text("not a key\n")
    assert "not an unencrypted Ed25519" in _refused(*base, "--key", str(tmp_path / "public.pem"))
    assert "not both" in _refused(*base, "--api-key-file", str(key))
    assert "--grace-seconds must be at least" in _refused(
        *base, "--settle-seconds", "10", "--grace-seconds", "5"
    )
    assert "--verifier-key" in _refused(*base, "--verifier-key", "nope")
    assert not (tmp_path / "d").exists()  # refused before anything was created


# --- the sidecar example in deploy/ --------------------------------------------------------


def _sidecar_docs() -> list[dict[str, Any]]:
    with SIDECAR.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


@pytest.mark.parametrize("version", ["1.28", kubernetes_validate.latest_version()])
def test_the_sidecar_example_matches_the_kubernetes_schemas(version: str) -> None:
    for doc in _sidecar_docs():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_sidecar_example_runs_a_valid_collector_the_app_exports_to() -> None:
    (workload,) = [doc for doc in _sidecar_docs() if doc["kind"] == "StatefulSet"]
    spec = workload["spec"]["template"]["spec"]
    containers = {container["name"]: container for container in spec["containers"]}
    sidecar = containers.pop("prov-collector")
    args = sidecar["args"]
    assert args[0] == "collector"
    options = collector_command.make_context("collector", list(args[1:])).params
    assert options["host"] == "127.0.0.1"  # only the pod's own containers reach it
    (app,) = containers.values()
    env = {var["name"]: var.get("value") for var in app["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{options['port']}"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    # The key, the API key and the span store come from the pod's volumes.
    mounts = {mount["mountPath"]: mount for mount in sidecar["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for path in (options["key_file"], options["api_key_file"]):
        (mount,) = [m for where, m in mounts.items() if Path(path).parent == Path(where)]
        assert mount["readOnly"] is True
        assert "secret" in volumes[mount["name"]]
    # The span store outlives the pod: a volume claimed per pod, not an emptyDir.
    claims = {claim["metadata"]["name"] for claim in workload["spec"]["volumeClaimTemplates"]}
    assert mounts[str(options["data"])]["name"] in claims
    probe = sidecar["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"
    assert probe["port"] == options["port"]
