"""Bad input through `prov append`: each gets a one-line error naming the line and the fault,
a non-zero exit, and nothing of it is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import Engine

from ledger.keys.ed25519 import SigningKey
from ledger.keys.keyring import derive_keyid, revoke_key
from ledger.ledger import Ledger
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision
from service.demo.scenarios import demo_decisions
from service.demo.traffic import demo_signing_key, register_demo_keys
from tests.support import demo_envelopes, prov, register, sign, table_counts


def a_decision(seed: int = 5) -> Decision:
    return next(iter(demo_decisions(1, seed=seed)))


def malformed_json(engine: Engine) -> bytes:
    return b'{"payloadType": "application/vnd.prov.decision.v1+json", "payload": '


def wrong_payload_type(engine: Engine) -> bytes:
    decision = a_decision()
    envelope = msgspec.json.decode(sign(decision))
    key = demo_signing_key(decision.tenant, decision.service)
    resigned = dsse.sign_envelope(
        "application/json",
        dsse.b64decode(envelope["payload"]),
        key,
        envelope["signatures"][0]["keyid"],
    )
    return dsse.encode_envelope(resigned)


def bad_signature(engine: Engine) -> bytes:
    envelope = msgspec.json.decode(sign(a_decision()))
    signature = bytearray(dsse.b64decode(envelope["signatures"][0]["sig"]))
    signature[7] ^= 0x01
    envelope["signatures"][0]["sig"] = dsse.b64encode(bytes(signature))
    return msgspec.json.encode(envelope)


def unknown_key(engine: Engine) -> bytes:
    return sign(a_decision(), SigningKey.generate())


def revoked_key(engine: Engine) -> bytes:
    decision = a_decision()
    key = SigningKey.generate()
    keyid = register(engine, key, tenant=decision.tenant, service=decision.service)
    with engine.begin() as connection:
        revoke_key(connection, keyid, at=datetime.now(UTC))
    return sign(decision, key)


def key_outside_its_window(engine: Engine) -> bytes:
    decision = a_decision()
    key = SigningKey.generate()
    register(
        engine,
        key,
        tenant=decision.tenant,
        service=decision.service,
        valid_from=decision.occurred_at + timedelta(seconds=1),
    )
    return sign(decision, key)


def key_of_another_service(engine: Engine) -> bytes:
    decision = a_decision()
    key = SigningKey.generate()
    register(engine, key, tenant=decision.tenant, service="someone-else")
    return sign(decision, key)


def oversized_record(engine: Engine) -> bytes:
    decision = a_decision()
    decision.attributes = {"padding": "x" * (1 << 20)}
    return sign(decision)


def missing_required_field(engine: Engine) -> bytes:
    decision = a_decision()
    payload = msgspec.json.decode(dsse.payload_bytes(dsse.decode_envelope(sign(decision))))
    del payload["model"]["name"]
    key = demo_signing_key(decision.tenant, decision.service)
    envelope = dsse.sign_envelope(
        DECISION_PAYLOAD_TYPE, msgspec.json.encode(payload), key, derive_keyid(key.public_key)
    )
    return dsse.encode_envelope(envelope)


def duplicate_id_with_different_bytes(engine: Engine) -> bytes:
    decision = a_decision()
    decision.subject = "a-different-subject"
    return sign(decision)


CASES: dict[str, tuple[Callable[[Engine], bytes], str]] = {
    "malformed JSON": (malformed_json, "malformed-envelope: envelope is not valid JSON"),
    "wrong payloadType": (wrong_payload_type, "unsupported-payload-type"),
    "bad signature": (bad_signature, "bad-signature"),
    "unknown key": (unknown_key, "unknown-key"),
    "revoked key": (revoked_key, "key-revoked"),
    "key outside its window": (key_outside_its_window, "key-not-valid"),
    "key of another service": (key_of_another_service, "key-not-authorized"),
    "oversized record": (oversized_record, "record-too-large"),
    "missing required field": (missing_required_field, "(at /model/name)"),
    "duplicate id with different bytes": (duplicate_id_with_different_bytes, "id-conflict"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_record_is_refused_clearly_and_nothing_is_stored(
    case: str, ledger: Ledger, db_url: str, key_path: Path, tmp_path: Path
) -> None:
    make, expected = CASES[case]
    # The original of the duplicate-id case is stored first.
    register_demo_keys(ledger.engine, "acme")
    ledger.append([sign(a_decision())])
    bad = make(ledger.engine)
    before = table_counts(ledger.engine)
    source = tmp_path / "in.ndjson"
    source.write_bytes(bad + b"\n")
    run = prov(["append", str(source)], db=db_url, key=key_path)
    assert run.code == 1
    assert run.out == ""
    lines = run.err.splitlines()
    assert lines[0].startswith("prov: line 1: "), lines
    assert expected in lines[0], lines[0]
    assert lines[1:] == ["prov: 1 of 1 records rejected; 0 stored"]
    assert table_counts(ledger.engine) == before
    assert ledger.verify(signatures=True)


def test_good_lines_are_stored_and_bad_lines_named(
    ledger: Ledger, db_url: str, key_path: Path, tmp_path: Path
) -> None:
    good = demo_envelopes(ledger.engine, 3, seed=11)
    source = tmp_path / "mixed.ndjson"
    source.write_bytes(b"\n".join([good[0], b"[1, 2]", good[1], b"", good[2], b"nope"]) + b"\n")
    run = prov(["append", str(source)], db=db_url, key=key_path)
    assert run.code == 1
    assert [line["index"] for line in run.json_lines()] == [0, 1, 2]
    errors = run.err.splitlines()
    assert [line.split(":")[1].strip() for line in errors[:2]] == ["line 2", "line 6"]
    assert errors[2:] == ["prov: 2 of 5 records rejected; 3 stored"]
    assert table_counts(ledger.engine).entries == 3
