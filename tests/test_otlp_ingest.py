"""OTLP/HTTP ingest on a live `prov serve`: split, repeated and reordered exports, a root
that never comes, bad bodies, and a kill -9 between two exports of one trace.

Spans here are hand-built OTLP protobuf (tests/otlp_support.py), so that a test controls
exactly which export carries which span; tests/test_otlp_instrumentations.py sends what the
real OpenTelemetry SDK and instrumentations emit.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.http_server import Server, prepared_server
from tests.otlp_support import PROTOBUF, TraceBuilder, export_body, send, wait_for_why
from tests.support import prov

SETTINGS = {"PROV_OTLP_SETTLE_SECONDS": "0.2", "PROV_OTLP_GRACE_SECONDS": "1.5"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server for the tests that need no restart; each uses its own traces."""
    directory = tmp_path_factory.mktemp("otlp")
    running = prepared_server(str(directory / "ledger.db"), directory, **SETTINGS)
    running.start()
    yield running
    running.stop()


def _stored(server: Server, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.db_url) as connection:
        return connection.execute(sql).fetchall()


def _steps(report: dict[str, Any]) -> list[str]:
    return [step["kind"] for step in report["decision"]["steps"]]


def test_split_reordered_and_repeated_exports_make_one_complete_decision(
    shared: Server,
) -> None:
    trace = TraceBuilder()
    root, children = trace.loan_trace()
    key = shared.admin_key
    # Children first, split over two exports, the first sent twice (an OTLP retry), the
    # root last: the usual order, since a parent ends after its children.
    assert not send(shared.url, key, children[:2]).HasField("partial_success")
    assert not send(shared.url, key, children[:2]).HasField("partial_success")
    send(shared.url, key, [children[2]])
    send(shared.url, key, [root])
    report = wait_for_why(shared.url, key, trace.decision_id(root))
    decision = report["decision"]
    assert _steps(report) == ["llm_call", "tool_call", "llm_call"]
    assert decision["service"] == "loan-service"
    assert decision["decision_type"] == "loan.approve"
    assert decision["subject"] == "applicant-1"
    assert decision["steps"][1]["call_id"] == "call-1"
    assert decision["steps"][1]["result"] == {"score": 720}
    assert decision["output"]["decision"] == {"approve": True, "limit": 500}
    assert decision["prompt"]["messages"] == [{"role": "user", "content": "Approve A-1 for 500?"}]
    assert decision["usage"] == {"input_tokens": 24, "output_tokens": 14}
    assert decision["links"] == {"trace_id": trace.trace_hex, "span_id": root.span_id.hex()}
    # Stored once: one log entry for the trace, and no span left waiting.
    entries = _stored(
        shared, f"SELECT count(*) FROM log_entries WHERE record_id LIKE 'otlp-{trace.trace_hex}-%'"
    )
    assert entries == [(1,)]
    assert _stored(
        shared, f"SELECT count(*) FROM otlp_items WHERE trace_id = '{trace.trace_hex}'"
    ) == [(0,)]
    # A late repeat of an export is refused and said so, never stored.
    late = send(shared.url, key, children[:2])
    assert late.partial_success.rejected_spans == 2
    assert "after their trace was assembled" in late.partial_success.error_message
    assert entries == _stored(
        shared, f"SELECT count(*) FROM log_entries WHERE record_id LIKE 'otlp-{trace.trace_hex}-%'"
    )


def test_a_decision_built_from_spans_is_ledger_attested_and_replays(
    shared: Server, tmp_path: Path
) -> None:
    trace = TraceBuilder()
    root, children = trace.loan_trace()
    send(shared.url, shared.admin_key, [*children, root])
    record_id = trace.decision_id(root)
    report = wait_for_why(shared.url, shared.admin_key, record_id)
    signature = report["evidence"]["signing_key"]
    assert signature["service"] == "prov-replay"
    row = _stored(shared, f"SELECT attestation FROM decisions WHERE record_id = '{record_id}'")
    assert row == [("ledger-attested",)]
    replayed = prov(
        ["replay", record_id, "--tenant", "acme", "--mode", "deterministic", "--json"],
        db=shared.db_url,
        key=shared.key_file,
    )
    assert replayed.code == 0, replayed.err
    assert json.loads(replayed.out)["verdict"] == "identical"


def test_spans_without_message_content_make_a_decision_that_says_it_cannot_replay(
    shared: Server,
) -> None:
    trace = TraceBuilder()
    root, children = trace.loan_trace(messages=False)
    send(shared.url, shared.admin_key, [*children, root])
    record_id = trace.decision_id(root)
    report = wait_for_why(shared.url, shared.admin_key, record_id)
    reason = report["decision"]["attributes"]["prov.not_replayable"]
    assert "without its messages" in reason
    replayed = prov(
        ["replay", record_id, "--tenant", "acme", "--mode", "deterministic"],
        db=shared.db_url,
        key=shared.key_file,
    )
    assert replayed.code != 0
    assert "cannot be replayed" in replayed.err
    assert "without its messages" in replayed.err


def test_a_trace_whose_root_never_comes_is_closed_as_an_incomplete_decision(
    shared: Server,
) -> None:
    trace = TraceBuilder()
    _, children = trace.loan_trace()
    send(shared.url, shared.admin_key, children)
    # The earliest span whose parent is missing heads it: the first chat call.
    report = wait_for_why(shared.url, shared.admin_key, trace.decision_id(children[0]))
    assert report["decision"]["attributes"]["otlp"]["incomplete"] is True
    assert _steps(report) == ["llm_call", "tool_call", "llm_call"]


def test_a_marked_span_heads_its_own_decision_inside_a_larger_trace(shared: Server) -> None:
    trace = TraceBuilder()
    request = trace.span("POST /loans", {"http.method": "POST"}, parent=None, offset_ms=0)
    decision = trace.span(
        "approve",
        {"prov.decision_type": "loan.approve", "prov.decision_id": f"loan-{trace.trace_hex}"},
        parent=request,
        offset_ms=1,
        took_ms=50,
    )
    trace.chat(decision, 5, messages=[{"role": "user", "content": "ok?"}], answer={})
    send(shared.url, shared.admin_key, trace.spans[1:])
    report = wait_for_why(shared.url, shared.admin_key, f"loan-{trace.trace_hex}")
    assert report["decision"]["decision_type"] == "loan.approve"
    assert _steps(report) == ["llm_call"]


def _status(body: bytes) -> tuple[int, str]:
    """A google.rpc.Status in protobuf: field 1 (code, varint) and 2 (message)."""
    assert body[0] == 0x08
    code = body[1]
    assert body[2] == 0x12
    length, at = 0, 3
    shift = 0
    while True:
        byte = body[at]
        length |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if byte < 0x80:
            break
    return code, body[at : at + length].decode()


def test_bad_exports_get_clear_otlp_errors_and_store_nothing(shared: Server) -> None:
    auth = {"Authorization": f"Bearer {shared.admin_key}"}
    before = _stored(shared, "SELECT count(*) FROM otlp_items")
    url = f"{shared.url}/v1/traces"
    garbage = httpx.post(url, content=b"\xff\xff\xff\x07nope", headers=auth | PROTOBUF)
    assert garbage.status_code == 400
    assert _status(garbage.content)[0] == 3  # INVALID_ARGUMENT
    bad_json = httpx.post(
        url, content=b'{"resourceSpans": 7}', headers=auth | {"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["code"] == 3
    assert "OTLP export" in bad_json.json()["message"]
    wrong_type = httpx.post(url, content=b"x", headers=auth | {"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    # No OTLP encoding to answer in: a problem document, as the rest of the API answers.
    assert wrong_type.headers["content-type"].startswith("application/problem+json")
    assert wrong_type.json()["type"].endswith("unsupported-media-type")
    # 20 MB of zeros gzip to a few KB: the inflated size is what counts.
    bomb = gzip.compress(b"\0" * (20 << 20))
    inflated = httpx.post(url, content=bomb, headers=auth | PROTOBUF | {"Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    assert "limit" in _status(inflated.content)[1]
    oversized = httpx.post(url, content=b"\0" * ((16 << 20) + 1), headers=auth | PROTOBUF)
    assert oversized.status_code == 413
    truncated = httpx.post(
        url,
        content=gzip.compress(export_body(TraceBuilder().loan_trace()[1]))[:-20],
        headers=auth | PROTOBUF | {"Content-Encoding": "gzip"},
    )
    assert truncated.status_code == 400
    assert _stored(shared, "SELECT count(*) FROM otlp_items") == before
    # A span with a bad id is dropped alone, and the answer says so.
    trace = TraceBuilder()
    good = trace.root()
    bad = Span(trace_id=b"\1" * 15, span_id=b"\2" * 8, name="short id")
    answer = send(shared.url, shared.admin_key, [good, bad])
    assert answer.partial_success.rejected_spans == 1
    assert "traceId must be 16 bytes" in answer.partial_success.error_message
    wait_for_why(shared.url, shared.admin_key, trace.decision_id(good))


def test_json_and_gzip_exports_make_the_same_record_as_protobuf(shared: Server) -> None:
    trace = TraceBuilder()
    root, children = trace.loan_trace()
    request = ExportTraceServiceRequest.FromString(export_body([*children, root]))
    encoded = json_format.MessageToDict(request)
    # OTLP/JSON writes ids as hex, where protobuf's JSON mapping writes base64.
    for resource in encoded["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    answer = httpx.post(
        f"{shared.url}/v1/traces",
        content=gzip.compress(json.dumps(encoded).encode()),
        headers={
            "Authorization": f"Bearer {shared.admin_key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    report = wait_for_why(shared.url, shared.admin_key, trace.decision_id(root))
    assert _steps(report) == ["llm_call", "tool_call", "llm_call"]


def test_otlp_needs_a_writer_key(shared: Server) -> None:
    body = export_body(TraceBuilder().loan_trace()[1])
    anonymous = httpx.post(f"{shared.url}/v1/traces", content=body, headers=PROTOBUF)
    assert anonymous.status_code == 401
    auditor = shared.api_key("audit")
    refused = httpx.post(
        f"{shared.url}/v1/traces",
        content=body,
        headers=PROTOBUF | {"Authorization": f"Bearer {auditor}"},
    )
    assert refused.status_code == 403


@pytest.mark.slow
def test_kill_9_between_two_exports_of_one_trace_loses_nothing(db_url: str, tmp_path: Path) -> None:
    # The grace period outlasts the restart: the root is late, not missing.
    server = prepared_server(db_url, tmp_path, **(SETTINGS | {"PROV_OTLP_GRACE_SECONDS": "120"}))
    server.start()
    try:
        trace = TraceBuilder()
        root, children = trace.loan_trace()
        send(server.url, server.admin_key, children)
        server.kill()
        server.start()
        send(server.url, server.admin_key, [root])
        report = wait_for_why(server.url, server.admin_key, trace.decision_id(root))
        assert _steps(report) == ["llm_call", "tool_call", "llm_call"]
        assert "incomplete" not in report["decision"]["attributes"]["otlp"]
    finally:
        server.stop()


def test_metrics_count_what_was_received_and_assembled(shared: Server) -> None:
    trace = TraceBuilder()
    root, children = trace.loan_trace()
    send(shared.url, shared.admin_key, [*children, root])
    wait_for_why(shared.url, shared.admin_key, trace.decision_id(root))
    text = httpx.get(f"{shared.url}/metrics").text

    def value(series: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(series + " ")]
        assert lines, f"{series} missing from /metrics"
        return float(lines[0].split()[-1])

    assert value('prov_otlp_items_total{outcome="stored",signal="spans"}') >= 4
    assert value('prov_otlp_traces_total{outcome="complete"}') >= 1
    assert value("prov_otlp_decisions_total") >= 1
    assert value('prov_otlp_traces_waiting{state="done"}') >= 1


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgresql_assemble_each_trace_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """Both workers' assemblers claim from one span store: every trace is appended exactly
    once, whichever worker received its spans."""
    server = prepared_server(postgres_url, tmp_path, PROV_WORKERS="2", **SETTINGS)
    server.start()
    try:
        traces = [TraceBuilder() for _ in range(120)]
        built = [trace.loan_trace() for trace in traces]

        def export(index: int) -> None:
            root, children = built[index]
            # The root in its own export, so that the two halves may reach different workers.
            send(server.url, server.admin_key, children)
            send(server.url, server.admin_key, [root])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(export, range(len(traces))))
        last = traces[-1].decision_id(built[-1][0])
        wait_for_why(server.url, server.admin_key, last, timeout=60)
        with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as db:
            deadline = 60
            while deadline:
                open_traces = db.execute(
                    "SELECT count(*) FROM otlp_traces WHERE state <> 'done'"
                ).fetchone()
                if open_traces == (0,):
                    break
                time.sleep(0.5)
                deadline -= 1
            ids = [row[0] for row in db.execute("SELECT record_id FROM decisions")]
            waiting = db.execute("SELECT count(*) FROM otlp_items").fetchone()
        expected = [t.decision_id(b[0]) for t, b in zip(traces, built, strict=True)]
        assert sorted(ids) == sorted(expected)
        assert waiting == (0,)
    finally:
        server.stop()
