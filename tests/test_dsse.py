"""DSSE envelopes: the PAE encoding from the spec, signing and verification."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from ledger.errors import MalformedEnvelope
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.records import dsse
from ledger.storage.schema import log_entries
from tests.support import demo_envelopes


def test_pae_matches_the_spec_example() -> None:
    # secure-systems-lab/dsse protocol.md test vector.
    assert (
        dsse.pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@given(payload_type=st.text(max_size=40), payload=st.binary(max_size=300))
def test_signed_envelope_verifies_and_any_bit_flip_does_not(
    payload_type: str, payload: bytes
) -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    envelope = dsse.sign_envelope(payload_type, payload, key, "k1")
    decoded = dsse.decode_envelope(dsse.encode_envelope(envelope))
    body = dsse.payload_bytes(decoded)
    assert body == payload
    assert dsse.verify_envelope(decoded, body, "k1", key.public_key)
    assert not dsse.verify_envelope(decoded, body, "k2", key.public_key)
    assert not dsse.verify_envelope(decoded, body + b"x", "k1", key.public_key)
    other_type = dsse.Envelope(payload_type + "x", decoded.payload, decoded.signatures)
    assert not dsse.verify_envelope(other_type, body, "k1", key.public_key)


def test_url_safe_base64_is_accepted() -> None:
    assert dsse.b64decode("-_8=") == b"\xfb\xff"


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        (b'{"payloadType": 1, "payload": "", "signatures": []}', "/payloadType"),
        (b'{"payloadType": "t", "signatures": []}', "/payload"),
        (b'{"payloadType": "t", "payload": "", "signatures": [{"sig": 5}]}', "/signatures/0/sig"),
        (b'{"payloadType": "t", "payload": "", "signatures": []}', "/signatures"),
        (b"[]", ""),
    ],
)
def test_malformed_envelopes_name_the_field(raw: bytes, pointer: str) -> None:
    with pytest.raises(MalformedEnvelope) as caught:
        dsse.decode_envelope(raw)
    assert (caught.value.pointer or "") == pointer


def test_invalid_json_is_a_malformed_envelope() -> None:
    with pytest.raises(MalformedEnvelope, match="not valid JSON"):
        dsse.decode_envelope(b'{"payloadType": ')


def test_unrecognized_envelope_fields_are_ignored_and_the_bytes_kept(ledger: Ledger) -> None:
    """The DSSE spec: consumers MUST ignore unrecognized fields, at the top level and in
    each signature. The record is admitted and stored exactly as sent."""
    [raw] = demo_envelopes(ledger.engine, 1, seed=61)
    envelope = msgspec.json.decode(raw)
    envelope["x-producer"] = {"build": 7}
    envelope["signatures"][0]["cert"] = "not used by this verifier"
    extended = msgspec.json.encode(envelope)
    [receipt] = ledger.append([extended])
    assert isinstance(receipt, Receipt), receipt
    with ledger.engine.connect() as connection:
        stored = connection.execute(
            select(log_entries.c.envelope).where(log_entries.c.idx == receipt.index)
        ).scalar_one()
    assert bytes(stored) == extended
    assert ledger.verify(signatures=True)
