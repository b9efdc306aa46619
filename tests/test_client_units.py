"""The client SDK's parts that need no server: building and signing records, backoff,
receipt verification, problem documents, batching, and the retry flows driven with
hand-written HTTP answers.

End-to-end behaviour against a real `prov serve` lives in the HTTP tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import time
import uuid
from collections.abc import Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest

from ingest.client import (
    AsyncClient,
    Client,
    ClientClosed,
    ConnectionFailed,
    InvalidDecision,
    ProblemError,
    QueueFull,
    ReceiptInvalid,
    SignedRecord,
    UnexpectedResponse,
    new_decision,
)
from ingest.client._buffer import BatchBuffer
from ingest.client._flows import (
    Action,
    Reply,
    Request,
    Response,
    Sleep,
    Unreachable,
    append_flow,
    batch_flow,
    unreachable,
)
from ingest.client._receipts import check_receipt, parse_batch, parse_log_verifier
from ingest.client._records import batch_body, chunks, sign_record
from ingest.client.errors import parse_problem
from ledger.backoff import Attempts, RetryPolicy
from ledger.keys.signing import SigningKey, derive_keyid
from ledger.log.note import NoteSigner, NoteVerifier
from ledger.log.receipt import Receipt, issue_receipt
from ledger.log.sequencer import Appended
from ledger.records import dsse
from ledger.records.decision import LlmCall, Model, Output, Usage, decode_decision

ORIGIN = "test.example/prov/ledger"
LEDGER = NoteSigner(ORIGIN, SigningKey.from_seed(b"\x01" * 32))
SERVICE_KEY = SigningKey.from_seed(b"\x02" * 32)
MODEL = Model(provider="acme-ml", name="scorecard", version="1.0")


def decision(**overrides: Any) -> Any:
    at = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    parts: dict[str, Any] = {
        "tenant": "acme",
        "service": "loan-underwriter",
        "decision_type": "loan.approve",
        "inputs": {"amount": "12000"},
        "model": MODEL,
        "output": Output(decision={"approved": True}),
        "steps": [LlmCall(started_at=at, ended_at=at + timedelta(milliseconds=5))],
        "usage": Usage(input_tokens=10, output_tokens=3),
    }
    return new_decision(**(parts | overrides))


def record(**overrides: Any) -> SignedRecord:
    return sign_record(decision(**overrides), SERVICE_KEY)


def receipt_for(
    signed: SignedRecord, *, index: int = 41, created: bool = True, signer: NoteSigner = LEDGER
) -> Receipt:
    """A receipt made by the ledger's own code, as the server makes it."""
    appended = Appended(
        index=index,
        leaf_hash=hashlib.sha256(b"leaf %d" % index).digest(),
        integrated_us=1_750_000_000_000_000 + index,
        tenant=signed.tenant,
        record_id=signed.id,
        envelope_digest=hashlib.sha256(signed.envelope).digest(),
        created=created,
    )
    return issue_receipt(appended, signer, signer.name)


def encoded(receipt: Receipt) -> bytes:
    return msgspec.json.encode(receipt)


# -- Building and signing -----------------------------------------------------------------


def test_new_decision_fills_identity_and_time_and_decodes_after_signing() -> None:
    before = datetime.now(UTC)
    made = decision(steps=[], usage=None)
    signed = sign_record(made, SERVICE_KEY)
    envelope = dsse.decode_envelope(signed.envelope)
    decoded = decode_decision(dsse.payload_bytes(envelope))
    assert decoded.id == made.id == signed.id
    assert (decoded.tenant, decoded.service) == ("acme", "loan-underwriter")
    assert decoded.model == MODEL
    assert decoded.output.decision == {"approved": True}
    assert decoded.occurred_at.utcoffset() == timedelta(0)
    assert before <= decoded.occurred_at <= datetime.now(UTC)
    parsed = uuid.UUID(decoded.id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    # UUIDv7 starts with the Unix time in milliseconds.
    assert abs((parsed.int >> 80) - int(before.timestamp() * 1000)) < 5_000


def test_ids_are_fresh_and_explicit_values_are_kept() -> None:
    ids = {decision().id for _ in range(200)}
    assert len(ids) == 200
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    kept = decision(id="loan-7", occurred_at=at)
    assert (kept.id, kept.occurred_at) == ("loan-7", at)


def test_client_new_decision_uses_its_tenant_and_service() -> None:
    client = Client(
        "http://127.0.0.1:9", "k", SERVICE_KEY, tenant="globex", service="router", verifier_key=None
    )
    try:
        made = client.new_decision(
            "order.route", inputs={}, model=MODEL, output=Output(decision={})
        )
    finally:
        client.close()
    assert (made.tenant, made.service, made.decision_type) == ("globex", "router", "order.route")


def test_signature_verifies_under_the_service_key_and_derived_or_given_keyid() -> None:
    signed = record()
    envelope = dsse.decode_envelope(signed.envelope)
    payload = dsse.payload_bytes(envelope)
    keyid = derive_keyid(SERVICE_KEY.public_key)
    assert envelope.signatures[0].keyid == keyid
    assert dsse.verify_envelope(envelope, payload, keyid, SERVICE_KEY.public_key)
    other = SigningKey.from_seed(b"\x03" * 32)
    assert not dsse.verify_envelope(envelope, payload, keyid, other.public_key)

    named = sign_record(decision(), SERVICE_KEY, keyid="loan-2025")
    named_envelope = dsse.decode_envelope(named.envelope)
    assert named_envelope.signatures[0].keyid == "loan-2025"


def test_signing_twice_gives_the_same_bytes() -> None:
    made = decision()
    assert sign_record(made, SERVICE_KEY).envelope == sign_record(made, SERVICE_KEY).envelope


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"decision_type": "Loan"}, "/decision_type"),
        ({"occurred_at": datetime(2025, 1, 1)}, "/occurred_at"),
        ({"tenant": "Acme Corp"}, "/tenant"),
        ({"id": "-starts-with-dash"}, "/id"),
    ],
)
def test_schema_faults_are_reported_before_sending(overrides: Any, pointer: str) -> None:
    with pytest.raises(InvalidDecision) as caught:
        record(**overrides)
    assert caught.value.pointer == pointer
    assert pointer in str(caught.value)


def test_signed_record_from_envelope_keeps_bytes_and_refuses_other_payloads() -> None:
    signed = record()
    again = SignedRecord.from_envelope(signed.envelope)
    assert again == signed
    assert again.sha256 == hashlib.sha256(signed.envelope).hexdigest()
    other = dsse.sign_envelope("text/plain", b"hi", SERVICE_KEY, "k")
    with pytest.raises(InvalidDecision) as caught:
        SignedRecord.from_envelope(dsse.encode_envelope(other))
    assert caught.value.pointer == "/payloadType"
    with pytest.raises(InvalidDecision):
        SignedRecord.from_envelope(b"{not json")


# -- Receipts -----------------------------------------------------------------------------


def test_a_real_receipt_for_the_sent_bytes_verifies() -> None:
    signed = record()
    receipt = check_receipt(encoded(receipt_for(signed)), LEDGER.verifier, signed)
    assert (receipt.index, receipt.id, receipt.tenant) == (41, signed.id, "acme")
    assert receipt.status == "created"
    existing = check_receipt(encoded(receipt_for(signed, created=False)), LEDGER.verifier, signed)
    assert existing.status == "existing"


def _with_payload(receipt: Receipt, payload: bytes) -> bytes:
    envelope = dsse.Envelope(
        receipt.receipt.payloadType, dsse.b64encode(payload), receipt.receipt.signatures
    )
    return encoded(msgspec.structs.replace(receipt, receipt=envelope))


def test_every_one_byte_change_to_the_signed_receipt_is_refused() -> None:
    signed = record()
    receipt = receipt_for(signed)
    payload = dsse.payload_bytes(receipt.receipt)
    for position in range(len(payload)):
        altered = bytearray(payload)
        altered[position] ^= 0x01
        with pytest.raises(ReceiptInvalid):
            check_receipt(_with_payload(receipt, bytes(altered)), LEDGER.verifier, signed)
    signature = dsse.signature_bytes(receipt.receipt, 0)
    for position in range(len(signature)):
        altered = bytearray(signature)
        altered[position] ^= 0x80
        sig = dsse.Signature(
            sig=dsse.b64encode(bytes(altered)), keyid=receipt.receipt.signatures[0].keyid
        )
        envelope = dsse.Envelope(receipt.receipt.payloadType, receipt.receipt.payload, [sig])
        with pytest.raises(ReceiptInvalid, match="not signed by the ledger key"):
            check_receipt(
                encoded(msgspec.structs.replace(receipt, receipt=envelope)), LEDGER.verifier, signed
            )


def test_a_receipt_for_other_envelope_bytes_is_refused() -> None:
    signed = record()
    receipt = encoded(receipt_for(signed))
    # The same id and tenant, but one byte different: what a receipt must not vouch for.
    altered = bytearray(signed.envelope)
    altered[-3] ^= 0x01
    other = SignedRecord(signed.id, signed.tenant, bytes(altered))
    with pytest.raises(ReceiptInvalid, match="covers envelope sha256") as caught:
        check_receipt(receipt, LEDGER.verifier, other)
    assert signed.sha256 in str(caught.value)
    with pytest.raises(ReceiptInvalid):
        check_receipt(encoded(receipt_for(record())), LEDGER.verifier, signed)


def test_a_receipt_signed_by_another_key_is_refused() -> None:
    signed = record()
    impostor = NoteSigner(ORIGIN, SigningKey.from_seed(b"\x09" * 32))
    with pytest.raises(ReceiptInvalid, match="not signed"):
        check_receipt(encoded(receipt_for(signed, signer=impostor)), LEDGER.verifier, signed)
    # Another log's key, even a valid signature, names another log.
    other_log = NoteSigner("other.example/log", SigningKey.from_seed(b"\x01" * 32))
    with pytest.raises(ReceiptInvalid):
        check_receipt(encoded(receipt_for(signed, signer=other_log)), LEDGER.verifier, signed)


@pytest.mark.parametrize(
    "change",
    [
        {"index": 42},
        {"leaf_hash": "00" * 32},
        {"integrated_at": "2030-01-01T00:00:00.000000Z"},
        {"id": "someone-else"},
        {"tenant": "globex"},
        {"status": "maybe"},
    ],
)
def test_clear_fields_that_contradict_the_signed_body_are_refused(change: dict[str, Any]) -> None:
    signed = record()
    receipt = msgspec.structs.replace(receipt_for(signed), **change)
    with pytest.raises(ReceiptInvalid):
        check_receipt(encoded(receipt), LEDGER.verifier, signed)


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"index": 1}', b"<html>oops</html>"],
)
def test_unparseable_receipts_are_receipt_invalid(body: bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        check_receipt(body, LEDGER.verifier, record())


def test_log_verifier_must_belong_to_the_announced_origin() -> None:
    key = LEDGER.verifier.encode()
    body = msgspec.json.encode({"origin": ORIGIN, "verifier_key": key, "tree_size": 3})
    assert parse_log_verifier(body) == LEDGER.verifier
    with pytest.raises(UnexpectedResponse):
        parse_log_verifier(msgspec.json.encode({"origin": "x.example", "verifier_key": key}))
    with pytest.raises(UnexpectedResponse):
        parse_log_verifier(msgspec.json.encode({"origin": ORIGIN, "verifier_key": "junk"}))


# -- Problem documents --------------------------------------------------------------------


def test_problem_documents_become_typed_errors() -> None:
    body = msgspec.json.encode(
        {
            "type": "urn:prov:problem:invalid-payload",
            "title": "Invalid record payload",
            "status": 422,
            "detail": "Expected `str`, got `int`",
            "errors": [
                {"pointer": "/payload/decision_type", "detail": "Expected `str`, got `int`"}
            ],
            "instance": "/v1/records",  # an extension member: ignored
        }
    )
    problem = parse_problem(422, "Unprocessable Entity", body)
    assert problem.status == 422
    assert problem.kind == "invalid-payload"
    assert problem.title == "Invalid record payload"
    assert problem.detail == "Expected `str`, got `int`"
    assert [(e.pointer, e.detail) for e in problem.errors] == [
        ("/payload/decision_type", "Expected `str`, got `int`")
    ]
    assert str(problem) == (
        "422 Invalid record payload: Expected `str`, got `int` (at /payload/decision_type) "
        "[invalid-payload]"
    )
    several = parse_problem(
        422,
        "",
        msgspec.json.encode(
            {
                "title": "Invalid",
                "detail": "2 faults",
                "errors": [{"pointer": "/a", "detail": "one"}, {"detail": "two"}],
            }
        ),
    )
    assert str(several) == "422 Invalid: 2 faults; one (at /a); two [about:blank]"


def test_the_http_status_wins_and_missing_members_are_tolerated() -> None:
    problem = parse_problem(429, "Too Many Requests", b'{"status": 400}', retry_after=3.0)
    assert (problem.status, problem.title, problem.type) == (
        429,
        "Too Many Requests",
        "about:blank",
    )
    assert problem.retry_after == 3.0
    assert problem.errors == ()


def test_a_non_problem_error_body_still_becomes_a_problem_error() -> None:
    page = b"<html><body>502 Bad Gateway</body></html>" + b"x" * 5000
    problem = parse_problem(502, "Bad Gateway", page)
    assert problem.status == 502
    assert problem.type == "about:blank"
    assert problem.detail is not None
    assert problem.detail.startswith("<html><body>502 Bad Gateway")
    assert len(problem.detail) <= 300


# -- Flows: the retry loop, driven with hand-written answers ------------------------------


def run_flow(
    flow: Generator[Action, Reply, Any], replies: Sequence[Response | Unreachable]
) -> tuple[Any, list[Request], list[float]]:
    """Run `flow`, answering its requests with `replies` in turn; what it returned, the
    requests it made and the sleeps it asked for."""
    requests: list[Request] = []
    sleeps: list[float] = []
    answers = iter(replies)
    reply: Reply = None
    while True:
        try:
            action = flow.send(reply)
        except StopIteration as done:
            return done.value, requests, sleeps
        if isinstance(action, Sleep):
            sleeps.append(action.seconds)
            reply = None
        else:
            requests.append(action)
            reply = next(answers)


def answer(status: int, body: bytes = b"", **headers: str) -> Response:
    return Response(status, "", httpx.Headers(headers), body)


def problem_body(status: int, kind: str = "overloaded") -> bytes:
    return msgspec.json.encode(
        {"type": f"urn:prov:problem:{kind}", "title": kind, "status": status}
    )


def attempts(max_retries: int = 5) -> Attempts:
    return Attempts(RetryPolicy(max_retries=max_retries, base_s=0.01, cap_s=0.05), random.Random(5))


def test_append_retries_transient_answers_resending_the_same_bytes() -> None:
    signed = record()
    replies: list[Response | Unreachable] = [
        unreachable(httpx.ConnectError("refused")),
        answer(503, problem_body(503)),
        answer(429, problem_body(429), **{"Retry-After": "2"}),
        answer(200, encoded(receipt_for(signed, created=False))),
    ]
    receipt, requests, sleeps = run_flow(append_flow(signed, LEDGER.verifier, attempts()), replies)
    assert receipt.status == "existing"
    assert len(requests) == 4
    assert {(r.method, r.path, r.body) for r in requests} == {
        ("POST", "/v1/records", signed.envelope)
    }
    assert len(sleeps) == 3
    assert 2.0 <= sleeps[2] <= 2.05  # Retry-After, plus at most the jitter window


@pytest.mark.parametrize("status", [400, 401, 403, 409, 413, 422])
def test_append_never_retries_other_client_errors(status: int) -> None:
    signed = record()
    with pytest.raises(ProblemError) as caught:
        run_flow(
            append_flow(signed, LEDGER.verifier, attempts()),
            [answer(status, problem_body(status, "refused"))],
        )
    assert caught.value.status == status
    assert caught.value.kind == "refused"


def test_append_gives_up_after_the_budget_with_the_last_problem() -> None:
    signed = record()
    with pytest.raises(ProblemError) as caught:
        run_flow(
            append_flow(signed, LEDGER.verifier, attempts(max_retries=2)),
            [answer(503, problem_body(503))] * 3,
        )
    assert caught.value.status == 503


def test_append_gives_up_at_once_when_retry_after_is_too_long() -> None:
    with pytest.raises(ProblemError) as caught:
        run_flow(
            append_flow(record(), LEDGER.verifier, attempts()),
            [answer(429, problem_body(429), **{"Retry-After": "3600"})],
        )
    assert caught.value.retry_after == 3600.0


def test_network_failures_end_in_connection_failed() -> None:
    with pytest.raises(ConnectionFailed) as caught:
        run_flow(
            append_flow(record(), LEDGER.verifier, attempts(max_retries=1)),
            [unreachable(httpx.ReadTimeout("slow"))] * 2,
        )
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    # A failure no retry can cure is not retried.
    with pytest.raises(ConnectionFailed):
        run_flow(
            append_flow(record(), LEDGER.verifier, attempts()),
            [unreachable(httpx.UnsupportedProtocol("ftp"))],
        )


def test_append_refuses_a_bad_receipt_in_a_success_answer() -> None:
    signed = record()
    with pytest.raises(ReceiptInvalid):
        run_flow(
            append_flow(signed, LEDGER.verifier, attempts()),
            [answer(201, encoded(receipt_for(record())))],
        )


def batch_answer(items: list[dict[str, Any]]) -> Response:
    return answer(200, msgspec.json.encode({"results": items}))


def test_batch_results_line_up_and_only_transient_items_are_resent() -> None:
    records = [record() for _ in range(3)]
    receipts = [msgspec.to_builtins(receipt_for(r, index=i)) for i, r in enumerate(records)]
    replies = [
        batch_answer(
            [
                {"position": 0, "status": 201, "receipt": receipts[0]},
                {"position": 1, "status": 503, "problem": {"title": "busy", "status": 503}},
                {
                    "position": 2,
                    "status": 422,
                    "problem": {
                        "type": "urn:prov:problem:invalid-payload",
                        "title": "Invalid record payload",
                        "status": 422,
                        "errors": [{"pointer": "/payload/id", "detail": "bad"}],
                    },
                },
            ]
        ),
        batch_answer([{"position": 0, "status": 200, "receipt": receipts[1]}]),
    ]
    results, requests, sleeps = run_flow(batch_flow(records, LEDGER.verifier, attempts()), replies)
    assert requests[0].body == batch_body(records)
    assert msgspec.json.decode(requests[0].body or b"") == [
        msgspec.json.decode(r.envelope) for r in records
    ]
    assert requests[1].body == batch_body([records[1]])
    assert len(sleeps) == 1
    assert isinstance(results[0], Receipt)
    assert results[0].index == 0
    assert isinstance(results[1], Receipt)
    assert results[1].index == 1
    assert isinstance(results[2], ProblemError)
    assert results[2].kind == "invalid-payload"
    assert results[2].errors[0].pointer == "/payload/id"


def test_a_batch_item_with_a_bad_receipt_fails_alone() -> None:
    records = [record(), record()]
    replies = [
        batch_answer(
            [
                {
                    "position": 0,
                    "status": 201,
                    "receipt": msgspec.to_builtins(receipt_for(records[0])),
                },
                # The receipt of the first record, answered for the second.
                {
                    "position": 1,
                    "status": 201,
                    "receipt": msgspec.to_builtins(receipt_for(records[0])),
                },
            ]
        )
    ]
    results, _, _ = run_flow(batch_flow(records, LEDGER.verifier, attempts()), replies)
    assert isinstance(results[0], Receipt)
    assert isinstance(results[1], ReceiptInvalid)


def test_a_batch_answer_with_missing_positions_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponse):
        parse_batch(msgspec.json.encode({"results": [{"position": 1, "status": 201}]}), 2)
    with pytest.raises(UnexpectedResponse):
        parse_batch(b"[]", 0)


def test_a_batch_refused_whole_raises() -> None:
    with pytest.raises(ProblemError) as caught:
        run_flow(
            batch_flow([record()], LEDGER.verifier, attempts()),
            [answer(413, problem_body(413, "body-too-large"))],
        )
    assert caught.value.kind == "body-too-large"


# -- Batching -----------------------------------------------------------------------------


def test_chunks_keep_order_and_respect_count_and_byte_limits() -> None:
    records = [record() for _ in range(7)]
    size = len(records[0].envelope)
    by_count = list(chunks(records, 3, 1 << 30))
    assert [len(c) for c in by_count] == [3, 3, 1]
    by_bytes = list(chunks(records, 100, 2 + 2 * size + 1))
    assert all(len(batch_body(c)) <= 2 + 2 * size + 1 for c in by_bytes)
    assert [len(c) for c in by_bytes] == [2, 2, 2, 1]
    assert [r for c in by_bytes for r in c] == records
    alone = list(chunks(records[:2], 100, 10))  # each record is larger than the limit
    assert [len(c) for c in alone] == [1, 1]


def test_buffer_cuts_a_batch_when_full_when_due_or_when_flushed() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(
        bound=4, batch_size=3, max_batch_bytes=1 << 20, flush_interval=1.0
    )
    assert buffer.wait_time(0.0) is None
    buffer.put(record(), 1, now=10.0)
    assert buffer.wait_time(10.25) == pytest.approx(0.75)
    assert buffer.wait_time(11.0) == 0.0  # the oldest record has waited the interval
    buffer.put(record(), 2, now=10.5)
    target = buffer.request_flush()
    assert target == 2
    assert buffer.wait_time(10.5) == 0.0
    assert [p.future for p in buffer.take()] == [1, 2]
    assert buffer.wait_time(10.5) is None
    for n in range(4):
        buffer.put(record(), n, now=20.0)
    assert buffer.full
    assert buffer.wait_time(20.0) == 0.0  # a full batch goes at once
    assert [p.future for p in buffer.take()] == [0, 1, 2]
    assert not buffer.full
    assert buffer.wait_time(20.0) == pytest.approx(1.0)  # the flush was already served
    buffer.settle(5)
    assert buffer.settled >= target
    buffer.closing = True
    assert buffer.wait_time(20.0) == 0.0
    assert not buffer.finished
    buffer.take()
    assert buffer.finished


# -- The clients' queue, with no server listening ----------------------------------------


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def idle_client(**options: Any) -> dict[str, Any]:
    """Arguments for a client whose queue holds one record and never sends on its own."""
    return {
        "base_url": closed_port_url(),
        "api_key": "secret-api-key",
        "signing_key": SERVICE_KEY,
        "tenant": "acme",
        "service": "loan-underwriter",
        "verifier_key": LEDGER.verifier.encode(),
        "max_retries": 0,
        "queue_bound": 1,
        "batch_size": 10,
        "flush_interval": 3600.0,
    } | options


def test_sync_queue_bound_close_flushes_and_closed_client_refuses() -> None:
    client = Client(**idle_client())
    assert "secret-api-key" not in repr(client)
    assert client.verifier_key == LEDGER.verifier
    first = client.submit(decision())
    with pytest.raises(QueueFull):
        client.submit(decision(), block=False)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        client.submit(decision(), timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert not first.done()  # nothing sends before the interval, a full batch or a flush
    client.close()
    # close() sent the queued record: it failed only because nobody listens.
    assert isinstance(first.exception(timeout=0), ConnectionFailed)
    with pytest.raises(ClientClosed):
        client.submit(decision())
    with pytest.raises(ClientClosed):
        client.append(decision())
    client.close()  # idempotent


def test_sync_flush_sends_what_is_queued_and_a_cancelled_record_is_dropped() -> None:
    with Client(**idle_client(queue_bound=2)) as client:
        cancelled = client.submit(decision())
        kept = client.submit(decision())
        assert cancelled.cancel()
        assert client.flush(timeout=30)
        assert isinstance(kept.exception(timeout=0), ConnectionFailed)
        assert cancelled.cancelled()


def test_async_queue_bound_and_close_flushes() -> None:
    async def scenario() -> None:
        client = AsyncClient(**idle_client())
        first = await client.submit(decision())
        with pytest.raises(QueueFull):
            await client.submit(decision(), block=False)
        with pytest.raises(QueueFull):
            await client.submit(decision(), timeout=0.05)
        assert not first.done()
        await client.close()
        assert isinstance(first.exception(), ConnectionFailed)
        with pytest.raises(ClientClosed):
            await client.submit(decision())
        async with AsyncClient(**idle_client(queue_bound=3)) as other:
            pending = [await other.submit(decision()) for _ in range(3)]
            assert await other.flush(timeout=30)
            assert all(isinstance(p.exception(), ConnectionFailed) for p in pending)

    asyncio.run(scenario())


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Client(**idle_client(batch_size=0))
    with pytest.raises(ValueError, match="api_key"):
        Client(**idle_client(api_key=""))
    with pytest.raises(ValueError, match="backoff"):
        Client(**idle_client(backoff_base=0))
    verifier = NoteVerifier.parse(LEDGER.verifier.encode())
    with Client(**idle_client(verifier_key=verifier)) as client:
        assert client.verifier() is verifier
