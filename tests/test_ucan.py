"""UCAN tokens in this ledger's profile: did:key, CIDs, DAG-CBOR envelopes kept byte for
byte, the spec's fixtures, and round trips of everything the library mints."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import libipld
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.delegation import ucan

# spec published it before 1.0.0 was final: tagged ucan/dlg@1.0.0-rc.1. The final fixtures
# are in tests/test_standards_defects.py.
SPEC_DELEGATION = base64.b64decode(
    "glhAd7jvZs44lTWmjSG/PWBRXvAdJA6Pq0fj86WQOVBYSw3fLrpjF7OMvjUlTynZZblPHzFsiBeBlUqtbCAHvhppCaJh"
    "aEg0Ae0B7QETcXN1Y2FuL2RsZ0AxLjAuMC1yYy4xp2NhdWR4OGRpZDprZXk6ejZNa21KY2VWb1FTSHM0NWNSZUVYb0x0"
    "V20xd29zQ0c4Ukx4Zkt3aHhvcXpvVGtDY2NtZGgvYWNjb3VudGNleHAaaIIMsWNpc3N4OGRpZDprZXk6ejZNa21UOWo2"
    "ZlZacXpYVjh1MndWVlN1NDlnWVNSWUdTUW5kdVdYRjZmb0FKcnF6Y3BvbIBjc3VieDhkaWQ6a2V5Ono2TWttVDlqNmZW"
    "WnF6WFY4dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemVub25jZUwnbSv2keQn/Kg2KsM="
)
SPEC_DELEGATION_CID = "bafyreifqsojs54lpxxyx5xfqxiwkc4paglcyqd7vjzrcyapxi557extz6m"
# Bob's key in that file: base64(varint 0x1300 || 32-byte Ed25519 private key).
SPEC_BOB = base64.b64decode("gCZfj9+RzU2U518TMBNK/fjdGQz34sB4iKE6z+9lQDpCIQ==")[2:]

# From ucan-wg/spec fixtures/1.0.0/invocation.json ("policy match"): a delegation whose policy
# is [["==", ".answer", 42]] and an invocation with args {"answer": 42} that it proves.
SPEC_POLICY_DELEGATION = base64.b64decode(
    "glhAJjUfUFt3TlI4pdVLEsOiqy60JIBJ7UPie3bvIdCtPa8pizVxOALlXPXgiPbY04X91l/pqfjLmjfvO0gukE/zBaJh"
    "aEg0Ae0B7QETcXN1Y2FuL2RsZ0AxLjAuMC1yYy4xp2NhdWR4OGRpZDprZXk6ejZNa2dHeWtOOUFSTkZqRXpvd1ZxNG1M"
    "UDJrTDROc3lBYURHWGVKRlE1cUUxYmZnY2NtZGkvbXNnL3NlbmRjZXhw9mNpc3N4OGRpZDprZXk6ejZNa21UOWo2ZlZa"
    "cXpYVjh1MndWVlN1NDlnWVNSWUdTUW5kdVdYRjZmb0FKcnF6Y3BvbIGDYj09Zy5hbnN3ZXIYKmNzdWJ4OGRpZDprZXk6"
    "ejZNa21UOWo2ZlZacXpYVjh1MndWVlN1NDlnWVNSWUdTUW5kdVdYRjZmb0FKcnF6ZW5vbmNlUAECAwQBAgMEAQIDBAEC"
    "AwQ="
)
SPEC_POLICY_INVOCATION = base64.b64decode(
    "glhA8GJF1ltl/tiqkXXMVjB9eJMVkWJlbPn9wEE6y2nr1tySr1yjBcEaGZxpIF5MBxgoSn6vNVXSbwR7EBSn6shxBqJh"
    "aEg0Ae0B7QETcXN1Y2FuL2ludkAxLjAuMC1yYy4xqGNjbWRpL21zZy9zZW5kY2V4cPZjaWF0Gmj1e4BjaXNzeDhkaWQ6"
    "a2V5Ono2TWtnR3lrTjlBUk5GakV6b3dWcTRtTFAya0w0TnN5QWFER1hlSkZRNXFFMWJmZ2NwcmaB2CpYJQABcRIgxwdN"
    "m1TWllZdDo20zoLeaPUWN3JXnT1yd1QNRXaLPyFjc3VieDhkaWQ6a2V5Ono2TWttVDlqNmZWWnF6WFY4dTJ3VlZTdTQ5"
    "Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemRhcmdzoWZhbnN3ZXIYKmVub25jZVAFBgcIBQYHCAUGBwgFBgcI"
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def test_rc1_spec_delegation_decodes_verifies_and_differs_from_ours_only_in_its_tag() -> None:
    token = ucan.decode_delegation(SPEC_DELEGATION)
    assert token.iss == token.sub == "did:key:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrqz"
    assert token.aud == "did:key:z6MkmJceVoQSHs45cReEXoLtWm1wosCG8RLxfKwhxoqzoTkC"
    assert (token.cmd, token.pol, token.exp, token.nbf, token.meta) == (
        "/account",
        [],
        1753353393,
        None,
        None,
    )
    assert ucan.signature_valid(token)
    assert ucan.cid_text(token.cid) == SPEC_DELEGATION_CID
    bob = Ed25519PrivateKey.from_private_bytes(SPEC_BOB)
    assert ucan.did_of(bob) == token.iss
    made = ucan.delegate(bob, token.aud, token.iss, token.cmd, token.pol, token.exp, token.nonce)
    # Minting writes the final tag (text of 14 bytes, 0x6e) where rc.1 had 19 (0x73).
    rc1_tag, final_tag = b"\x73ucan/dlg@1.0.0-rc.1", b"\x6eucan/dlg@1.0.0"
    assert made[67:] == SPEC_DELEGATION[67:].replace(rc1_tag, final_tag)


def test_spec_invocation_decodes_and_names_its_proof_by_cid() -> None:
    invocation = ucan.decode_invocation(SPEC_POLICY_INVOCATION)
    assert ucan.signature_valid(invocation)
    assert (invocation.cmd, invocation.args, invocation.exp) == ("/msg/send", {"answer": 42}, None)
    assert invocation.prf == [ucan.cid_of(SPEC_POLICY_DELEGATION)]
    assert ucan.decode_delegation(SPEC_POLICY_DELEGATION).pol == [["==", ".answer", 42]]


def test_minted_tokens_decode_and_verify_from_their_bytes_alone() -> None:
    root = ucan.delegate(
        KEY,
        ucan.did_of(OTHER),
        ucan.did_of(KEY),
        "/loan",
        [["<=", ".amount", 50_000]],
        2_000_000_000,
        not_before=1_700_000_000,
        meta={"name": "Alice"},
    )
    invocation = ucan.invoke(
        OTHER,
        ucan.did_of(KEY),
        "/loan/approve",
        {"amount": 1200, "blob": b"\x00\x01"},
        [root],
        expiration=None,
        issued_at=1_800_000_000,
        audience=ucan.did_of(KEY),
    )
    delegation = ucan.decode_delegation(root)
    invoked = ucan.decode_invocation(invocation)
    assert ucan.signature_valid(delegation)
    assert ucan.signature_valid(invoked)
    assert (delegation.nbf, delegation.meta, delegation.pol) == (
        1_700_000_000,
        {"name": "Alice"},
        [["<=", ".amount", 50_000]],
    )
    assert invoked.prf == [ucan.cid_of(root)]
    assert (invoked.args, invoked.iat, invoked.aud) == (
        {"amount": 1200, "blob": b"\x00\x01"},
        1_800_000_000,
        ucan.did_of(KEY),
    )
    # prf holds links (CBOR tag 42 over 0x00 || CID), as DAG-CBOR writes CIDs.
    assert b"\xd8\x2a\x58\x25\x00" + ucan.cid_of(root) in invocation
    assert ucan.cid_of(root) == b"\x01\x71\x12\x20" + hashlib.sha256(root).digest()


def test_a_token_is_checked_over_its_own_bytes() -> None:
    token = bytearray(ucan.delegate(KEY, ucan.did_of(OTHER), ucan.did_of(KEY), "/", [], None))
    token[10] ^= 0x01  # inside the signature
    assert not ucan.signature_valid(ucan.decode_delegation(bytes(token)))
    # A token signed by another key than its issuer's does not verify.
    forged = ucan.decode_delegation(
        ucan.delegate(OTHER, ucan.did_of(OTHER), ucan.did_of(KEY), "/", [], None)
    )
    assert not ucan.signature_valid(ucan.Delegation(**{**_fields(forged), "iss": ucan.did_of(KEY)}))


def _fields(token: ucan.Delegation) -> dict[str, Any]:
    return {name: getattr(token, name) for name in token.__struct_fields__}


def _envelope(payload: Any, tag: str = ucan.DELEGATION_TAG, header: bytes | None = None) -> bytes:
    signed = libipld.encode_dag_cbor({"h": header or ucan.VARSIG_ED25519_DAG_CBOR, tag: payload})
    return b"\x82\x58\x40" + KEY.sign(signed) + signed


GOOD_PAYLOAD = {
    "iss": ucan.did_of(KEY),
    "aud": ucan.did_of(OTHER),
    "sub": ucan.did_of(KEY),
    "cmd": "/",
    "pol": [],
    "nonce": b"n" * 12,
    "exp": None,
}


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (b"", "envelope"),
        (libipld.encode_dag_cbor([b"s" * 64]), "envelope"),
        (libipld.encode_dag_cbor([b"s" * 10, {"h": b""}]), "envelope"),
        (b"\x82\x58\x40" + b"s" * 64 + b"\xff", "not DAG-CBOR"),
        (b"\x82\x58\x40" + b"s" * 64 + libipld.encode_dag_cbor([1]), "{h, payload}"),
        (_envelope(GOOD_PAYLOAD, header=b"\x34\x01"), "Ed25519"),
        (_envelope(GOOD_PAYLOAD, tag="ucan/inv@1.0.0-rc.1"), "tagged"),
        (_envelope({**GOOD_PAYLOAD, "nonce": "text"}), "payload"),
        (_envelope({**GOOD_PAYLOAD, "extra": 1}), "payload"),
        (_envelope({**GOOD_PAYLOAD, "nonce": b"n" * 65}), "payload"),
        (_envelope({**GOOD_PAYLOAD, "exp": 2**60}), "payload"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(token: bytes, says: str) -> None:
    with pytest.raises(ucan.TokenInvalid, match=re.escape(says)):
        ucan.decode_delegation(token)


def test_the_final_tags_are_read_too() -> None:
    token = _envelope(GOOD_PAYLOAD, tag="ucan/dlg@1.0.0")
    assert ucan.signature_valid(ucan.decode_delegation(token))


def test_minting_refuses_what_the_profile_forbids() -> None:
    audience = ucan.did_of(OTHER)
    with pytest.raises(ValueError, match="lowercase path"):
        ucan.delegate(KEY, audience, ucan.did_of(KEY), "Order/route", [], None)
    with pytest.raises(ValueError, match="statement"):
        ucan.delegate(KEY, audience, ucan.did_of(KEY), "/", [["~", ".a", 1]], None)
    cid_like = ucan.cid_of(b"x")  # bytes that DAG-CBOR would write as a link
    with pytest.raises(ValueError, match="nonce"):
        ucan.delegate(KEY, audience, ucan.did_of(KEY), "/", [], None, cid_like)


def test_derived_and_fresh_nonces_stay_bytes() -> None:
    for seed in range(300):
        nonce = ucan.derived_nonce(str(seed).encode())
        assert len(nonce) == ucan.NONCE_SIZE
        assert libipld.encode_dag_cbor(nonce)[0] != 0xD8
    assert ucan.fresh_nonce() != ucan.fresh_nonce()


def test_commands_cover_their_subpaths_at_segment_boundaries() -> None:
    assert ucan.covers("/crypto", "/crypto/sign")
    assert ucan.covers("/crypto", "/crypto")
    assert ucan.covers("/", "/anything/at/all")
    assert not ucan.covers("/crypto", "/cryptocurrency")
    assert not ucan.covers("/crypto/sign", "/crypto")


def test_revocation_is_an_invocation_naming_the_delegation() -> None:
    delegation = ucan.delegate(KEY, ucan.did_of(OTHER), ucan.did_of(KEY), "/loan", [], None)
    revocation = ucan.decode_invocation(ucan.revoke(KEY, delegation, issued_at=1))
    assert (revocation.cmd, revocation.args, revocation.nonce) == (
        "/ucan/revoke",
        {"revoke": ucan.cid_of(delegation)},
        b"",
    )
    assert revocation.iss == ucan.did_of(KEY)
    assert ucan.signature_valid(revocation)


def test_did_key_round_trips_keys_with_leading_zero_bytes() -> None:
    for public_key in (bytes(32), b"\0\0" + bytes(range(30)), bytes(range(224, 256))):
        did = ucan.did_key(public_key)
        assert did.startswith("did:key:z6Mk")
        assert ucan.public_key_from_did(did) == public_key
    with pytest.raises(ValueError, match="not a base58btc did:key"):
        ucan.public_key_from_did("did:web:example.com")
    with pytest.raises(ValueError, match="base58btc digits"):
        ucan.public_key_from_did("did:key:z6Mk0OIl")
    with pytest.raises(ValueError, match="not an Ed25519"):
        ucan.public_key_from_did("did:key:z" + libipld.encode_multibase("z", b"\x12\x00")[1:])


# --- Properties ----------------------------------------------------------------------------

_TEXT = st.text(max_size=20)
IPLD = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=12,
)


@given(IPLD)
def test_dag_cbor_round_trips_and_is_deterministic(value: Any) -> None:
    data = libipld.encode_dag_cbor(value)
    decoded = libipld.decode_dag_cbor(data)
    assert libipld.encode_dag_cbor(decoded) == data
    if not _has_float_zero(value):  # -0.0 is written as 0.0
        assert decoded == value


def _has_float_zero(value: Any) -> bool:
    if isinstance(value, float):
        return value == 0
    if isinstance(value, list):
        return any(map(_has_float_zero, value))
    if isinstance(value, dict):
        return any(map(_has_float_zero, value.values()))
    return False


ARGS = st.dictionaries(_TEXT, IPLD, max_size=5)
COMMANDS = st.lists(st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), max_size=3).map(
    lambda segments: "/" + "/".join(segments)
)
TIMES = st.none() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)


@settings(max_examples=60, deadline=None)
@given(
    command=COMMANDS,
    meta=st.none() | ARGS,
    expiration=TIMES,
    not_before=TIMES,
    args=ARGS,
    issued_at=TIMES,
)
def test_every_minted_token_decodes_to_what_was_minted(
    command: str,
    meta: dict[str, Any] | None,
    expiration: int | None,
    not_before: int | None,
    args: dict[str, Any],
    issued_at: int | None,
) -> None:
    subject = ucan.did_of(KEY)
    token = ucan.delegate(
        KEY, ucan.did_of(OTHER), subject, command, [], expiration, None, not_before, meta
    )
    delegation = ucan.decode_delegation(token)
    assert ucan.signature_valid(delegation)
    assert (delegation.cmd, delegation.exp, delegation.nbf) == (command, expiration, not_before)
    assert libipld.encode_dag_cbor(delegation.meta) == libipld.encode_dag_cbor(meta)
    invocation = ucan.invoke(
        OTHER, subject, command, args, [token], expiration=expiration, issued_at=issued_at
    )
    invoked = ucan.decode_invocation(invocation)
    assert ucan.signature_valid(invoked)
    assert libipld.encode_dag_cbor(invoked.args) == libipld.encode_dag_cbor(args)
    assert invoked.prf == [delegation.cid]
    assert invoked.cid == ucan.cid_of(invocation)
