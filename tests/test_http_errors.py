"""Bad input over HTTP: each is refused with a problem+json that names the fault, and
nothing of it is stored; retries are idempotent; a batch answers item by item; blobs and
service keys check what they are given; /readyz and /metrics tell the truth."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ledger.keys.signing import SigningKey
from ledger.records import dsse
from ledger.records.decision import Decision
from service.demo.traffic import demo_signing_key
from tests.http_helpers import (
    SQLITE_ONLY,
    array,
    assert_problem,
    decisions,
    edit_envelope,
    edit_payload,
    metric,
    pointers,
    register_demo_keys,
    signed,
    tree_size,
)
from tests.http_server import Server, prepared_server
from tests.support import sign

MAX_RECORD_BYTES = 8192
BATCH_MAX_RECORDS = 3
MAX_BODY_BYTES = 32768
MAX_BLOB_BYTES = 16384
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def limited(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server with small record, batch, body and blob limits."""
    server = prepared_server(
        db_url,
        tmp_path,
        PROV_MAX_RECORD_BYTES=str(MAX_RECORD_BYTES),
        PROV_BATCH_MAX_RECORDS=str(BATCH_MAX_RECORDS),
        PROV_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        PROV_MAX_BLOB_BYTES=str(MAX_BLOB_BYTES),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def demo_keyids(limited: Server) -> dict[str, str]:
    """The demo services' keys, registered for acme: their keyids by service."""
    return register_demo_keys(limited, limited.admin_key)


@pytest.fixture
def client(limited: Server, demo_keyids: dict[str, str]) -> Iterator[httpx.Client]:
    """An admin client of the limited server, with the demo service keys registered."""
    with httpx.Client(
        base_url=limited.url, headers=limited.auth(limited.admin_key), timeout=30
    ) as client:
        yield client


def padded(decision: Decision) -> Decision:
    """The decision made larger than a record may be."""
    return msgspec.structs.replace(
        decision, attributes={**decision.attributes, "pad": "x" * MAX_RECORD_BYTES}
    )


def ndjson(*records: bytes) -> bytes:
    return b"\n".join(records) + b"\n"


def flip_signature_bit(envelope: dict[str, Any]) -> None:
    signature = bytearray(dsse.b64decode(envelope["signatures"][0]["sig"]))
    signature[7] ^= 0x01
    envelope["signatures"][0]["sig"] = dsse.b64encode(bytes(signature))


def with_payload_type(raw: bytes, payload_type: str) -> bytes:
    envelope = msgspec.json.decode(raw)
    payload = dsse.b64decode(envelope["payload"])
    decoded = msgspec.json.decode(payload)
    key = demo_signing_key(decoded["tenant"], decoded["service"])
    keyid = envelope["signatures"][0]["keyid"]
    return dsse.encode_envelope(dsse.sign_envelope(payload_type, payload, key, keyid))


def set_decision_type_to_a_number(payload: dict[str, Any]) -> None:
    payload["decision_type"] = 5


def test_oversized_record_and_batch_are_refused(limited: Server, client: httpx.Client) -> None:
    fits, big, *more = decisions(5, seed=11)
    record, too_big = signed(fits), signed(big, padded)
    assert len(record) <= MAX_RECORD_BYTES < len(too_big)
    size = tree_size(limited)

    problem = assert_problem(client.post("/v1/records", content=too_big), 413)
    assert problem["type"].rpartition(":")[2] in {"record-too-large", "body-too-large"}, problem
    many = [signed(decision) for decision in [fits, *more]]
    assert len(many) > BATCH_MAX_RECORDS
    for body, headers in ((array(*many), {}), (ndjson(*many), NDJSON)):
        answer = client.post("/v1/records/batch", content=body, headers=headers)
        problem = assert_problem(answer, 413, "batch-too-large")
        assert str(BATCH_MAX_RECORDS) in problem["detail"]
    huge = array(*(signed(decision, padded) for decision in [fits, *more][:BATCH_MAX_RECORDS]))
    assert len(huge) > MAX_BODY_BYTES
    assert_problem(client.post("/v1/records/batch", content=huge), 413, "body-too-large")
    assert tree_size(limited) == size

    # Within a batch, the oversized record alone is refused.
    answer = client.post("/v1/records/batch", content=array(record, too_big))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [item["status"] for item in results] == [201, 413]
    assert results[1]["problem"]["type"] == "urn:prov:problem:record-too-large"
    assert tree_size(limited) == size + 1


def test_bad_records_are_refused_with_a_pointer_and_nothing_stored(
    limited: Server, client: httpx.Client, demo_keyids: dict[str, str]
) -> None:
    decision, _, _, same_service = decisions(4, seed=12)  # scenarios cycle every three
    record = signed(decision)
    size = tree_size(limited)

    answer = client.post("/v1/records", content=record, headers={"Content-Type": "text/plain"})
    assert_problem(answer, 415, "unsupported-media-type")
    answer = client.post("/v1/records", content=with_payload_type(record, "application/json"))
    assert "/payloadType" in pointers(assert_problem(answer, 415, "unsupported-payload-type"))
    answer = client.post("/v1/records", content=edit_payload(record, set_decision_type_to_a_number))
    problem = assert_problem(answer, 422, "invalid-payload")
    assert pointers(problem) == ["/payload/decision_type"], problem
    answer = client.post("/v1/records", content=edit_envelope(record, flip_signature_bit))
    assert_problem(answer, 422, "bad-signature")
    answer = client.post("/v1/records", content=sign(decision, SigningKey.generate()))
    assert_problem(answer, 422, "unknown-key")
    answer = client.post("/v1/records", content=record[: len(record) // 2])
    assert_problem(answer, 422, "malformed-envelope")
    assert tree_size(limited) == size

    created = client.post("/v1/records", content=record)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created"
    retried = client.post("/v1/records", content=record)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "existing"
    for field in ("index", "leaf_hash", "tenant", "id", "integrated_at"):
        assert retried.json()[field] == created.json()[field], field

    # The same id with other bytes.
    same_id = msgspec.structs.replace(decision, subject="someone-else")
    answer = client.post("/v1/records", content=sign(same_id))
    assert_problem(answer, 409, "id-conflict")
    assert tree_size(limited) == size + 1

    # Once its service key is revoked, a service's records are refused, alone or in a batch.
    assert same_service.service == decision.service
    revoked = client.delete(f"/v1/keys/{demo_keyids[decision.service]}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert_problem(client.post("/v1/records", content=signed(same_service)), 422, "key-revoked")
    answer = client.post("/v1/records/batch", content=array(signed(same_service)))
    assert answer.json()["results"][0]["problem"]["type"] == "urn:prov:problem:key-revoked"
    assert tree_size(limited) == size + 1


def test_a_batch_answers_each_item_by_position(limited: Server, client: httpx.Client) -> None:
    good = [signed(decision) for decision in decisions(4, seed=15)]
    bad_signature = edit_envelope(good[3], flip_signature_bit)
    wrong_type = edit_payload(good[3], set_decision_type_to_a_number)
    size = tree_size(limited)

    answer = client.post("/v1/records/batch", content=array(good[0], bad_signature, good[1]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["created"], body["existing"], body["rejected"]) == (2, 0, 1)
    assert [item["position"] for item in body["results"]] == [0, 1, 2]
    assert [item["status"] for item in body["results"]] == [201, 422, 201]
    assert body["results"][1]["problem"]["type"] == "urn:prov:problem:bad-signature"
    assert "receipt" not in body["results"][1]
    assert tree_size(limited) == size + 2

    answer = client.post(
        "/v1/records/batch", content=ndjson(good[2], wrong_type, good[0]), headers=NDJSON
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["created"], body["existing"], body["rejected"]) == (1, 1, 1)
    assert [item["status"] for item in body["results"]] == [201, 422, 200]
    problem = body["results"][1]["problem"]
    assert problem["status"] == 422
    assert pointers(problem) == ["/payload/decision_type"]
    indexes = [item["receipt"]["index"] for item in body["results"] if "receipt" in item]
    assert indexes == [size + 2, size]
    assert tree_size(limited) == size + 3

    # A body that is no batch is refused whole.
    for content, headers, status, kind in (
        (b'{"not": "an array"}', {}, 400, "bad-request"),
        (b"[]", {}, 400, "bad-request"),
        (b"\n\n", NDJSON, 400, "bad-request"),
        (good[3], {"Content-Type": "text/plain"}, 415, "unsupported-media-type"),
    ):
        answer = client.post("/v1/records/batch", content=content, headers=headers)
        assert_problem(answer, status, kind)
    assert tree_size(limited) == size + 3


def test_blobs_and_service_keys_check_what_they_are_given(limited: Server) -> None:
    content = b"\x00retrieved context\xff"
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    other = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()
    audit = limited.auth(limited.api_key("audit"))
    ingest = limited.auth(limited.api_key("ingest"))
    octets = {"Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=limited.url, timeout=10) as client:
        answer = client.put(f"/v1/blobs/{other}", content=content, headers=ingest | octets)
        assert "/digest" in pointers(assert_problem(answer, 422, "digest-mismatch"))
        for malformed in ("sha256:XYZ", "md5:" + "0" * 32, digest.upper()):
            answer = client.put(f"/v1/blobs/{malformed}", content=content, headers=ingest | octets)
            assert_problem(answer, 400, "bad-request")
            assert_problem(client.get(f"/v1/blobs/{malformed}", headers=audit), 400, "bad-request")
        assert_problem(client.get(f"/v1/blobs/{other}", headers=audit), 404, "not-found")
        assert_problem(client.get(f"/v1/blobs/{digest}", headers=audit), 404, "not-found")
        large = bytes(MAX_BLOB_BYTES + 1)
        large_digest = "sha256:" + hashlib.sha256(large).hexdigest()
        answer = client.put(f"/v1/blobs/{large_digest}", content=large, headers=ingest | octets)
        assert_problem(answer, 413, "body-too-large")
        assert_problem(client.get(f"/v1/blobs/{large_digest}", headers=audit), 404, "not-found")

        stored = client.put(f"/v1/blobs/{digest}", content=content, headers=ingest | octets)
        assert stored.status_code == 201, stored.text
        assert stored.json() == {"digest": digest, "size": len(content)}
        again = client.put(f"/v1/blobs/{digest}", content=content, headers=ingest | octets)
        assert again.status_code == 200, again.text
        assert again.json() == {"digest": digest, "size": len(content)}
        fetched = client.get(f"/v1/blobs/{digest}", headers=audit)
        assert fetched.status_code == 200, fetched.text
        assert fetched.content == content
        assert fetched.headers["content-type"].startswith("application/octet-stream")

        # Erasure drops the bytes for good and keeps the digest: reads answer 410 Gone,
        # and the same bytes cannot come back.
        admin = limited.auth(limited.admin_key)
        assert_problem(client.delete(f"/v1/blobs/{other}", headers=admin), 404, "not-found")
        assert client.delete(f"/v1/blobs/{digest}", headers=admin).status_code == 204
        assert client.delete(f"/v1/blobs/{digest}", headers=admin).status_code == 204
        assert_problem(client.get(f"/v1/blobs/{digest}", headers=audit), 410, "blob-erased")
        answer = client.put(f"/v1/blobs/{digest}", content=content, headers=ingest | octets)
        assert_problem(answer, 410, "blob-erased")

    key = SigningKey.generate().public_key.hex()
    with httpx.Client(base_url=limited.url, headers=limited.auth(limited.admin_key)) as client:
        answer = client.post("/v1/keys", json={"service": "order-router", "public_key": "zz!"})
        assert "/public_key" in pointers(assert_problem(answer, 422, "key-registry"))
        answer = client.post("/v1/keys", json={"service": "order-router", "public_key": key[:-2]})
        assert "/public_key" in pointers(assert_problem(answer, 422))
        answer = client.post(
            "/v1/keys", json={"service": "order-router", "public_key": key, "owner": "mallory"}
        )
        problem = assert_problem(answer, 400, "bad-request")
        assert pointers(problem), problem
        assert "owner" in problem["detail"], problem
        answer = client.post("/v1/keys", json={"service": 7, "public_key": key})
        assert "/service" in pointers(assert_problem(answer, 400, "bad-request"))
        # None of those was registered; the one key listed is the ledger's record key,
        # registered when it signed the blob's erasure record.
        listed = client.get("/v1/keys").json()["keys"]
        assert [item["service"] for item in listed] == ["prov-replay"]

        registered = client.post("/v1/keys", json={"service": "order-router", "public_key": key})
        assert registered.status_code == 201, registered.text
        assert registered.json()["public_key"] == key
        assert len(client.get("/v1/keys").json()["keys"]) == 2


def test_readiness_and_metrics(limited: Server, client: httpx.Client) -> None:
    ready = httpx.get(f"{limited.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}

    good = [signed(decision) for decision in decisions(4, seed=16)]
    bad_signature = edit_envelope(good[3], flip_signature_bit)
    unknown = sign(decisions(1, seed=17)[0], SigningKey.generate())
    sent = [(good[0], 201), (good[1], 201), (good[0], 200), (bad_signature, 422), (unknown, 422)]
    for record, status in sent:
        assert client.post("/v1/records", content=record).status_code == status
    batch = [good[2], bad_signature, good[1]]
    assert client.post("/v1/records/batch", content=array(*batch)).status_code == 200

    text = httpx.get(f"{limited.url}/metrics").text
    assert metric(text, "prov_records_appended_total", status="created") == 3
    assert metric(text, "prov_records_appended_total", status="existing") == 2
    assert metric(text, "prov_records_rejected_total", reason="bad-signature") == 2
    assert metric(text, "prov_records_rejected_total", reason="unknown-key") == 1
    commits = len(sent) + 1
    assert metric(text, "prov_commit_batch_records_count") == commits
    assert metric(text, "prov_commit_batch_records_sum") == len(sent) + len(batch)
    assert metric(text, "prov_commit_batch_records_bucket", le="1.0") == len(sent)
    assert metric(text, "prov_commit_seconds_count") == commits
    assert metric(text, "prov_commit_seconds_sum") > 0
    assert tree_size(limited) == 3


@SQLITE_ONLY
def test_an_oversized_record_is_refused_as_record_too_large(
    limited: Server, client: httpx.Client
) -> None:
    too_big = signed(decisions(1, seed=18)[0], padded)
    assert_problem(client.post("/v1/records", content=too_big), 413, "record-too-large")


@SQLITE_ONLY
def test_an_unknown_member_is_named_by_its_pointer(limited: Server) -> None:
    key = SigningKey.generate().public_key.hex()
    body = {"service": "order-router", "public_key": key, "owner": "mallory"}
    with httpx.Client(base_url=limited.url, headers=limited.auth(limited.admin_key)) as client:
        problem = assert_problem(client.post("/v1/keys", json=body), 400, "bad-request")
        assert pointers(problem) == ["/owner"], problem
        answer = client.post("/v1/api-keys", json={"role": "audit", "owner": "mallory"})
        problem = assert_problem(answer, 400, "bad-request")
        assert pointers(problem) == ["/owner"], problem
