"""Minimal UCAN 1.0 delegations: create and decode real tokens (chain verification is separate).

Only what decision records need: did:key identifiers for Ed25519, a deterministic DAG-CBOR
codec for the IPLD kinds a delegation uses (map, list, text, bytes, integer, bool, null),
and the envelope ``[signature, {"h": varsig header, "ucan/dlg@1.0.0-rc.1": payload}]``
whose signature is Ed25519 over the DAG-CBOR bytes of its second element.

Sources: ucan-wg/spec (README "Envelope"; fixtures/1.0.0/delegation.json), ucan-wg/delegation
(README "Delegation Payload"), ChainAgnostic/varsig, and the IPLD DAG-CBOR spec.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import InvalidPayload

# The type tag of delegation payloads, as ucan-wg/delegation and the spec's 1.0.0 fixtures
# spell it (the specification is still a release candidate).
DELEGATION_TAG = "ucan/dlg@1.0.0-rc.1"

# Varsig v1 header for Ed25519 over DAG-CBOR: prefix 0x34, version 0x01, EdDSA 0xed and
# curve edwards25519 0xed (each the varint ed 01), hash SHA2-512 0x13, payload DAG-CBOR 0x71.
# This is "NAHtAe0BE3E" in ucan-wg/spec's envelope example and in the "h" of every token in
# ucan-wg/spec fixtures/1.0.0/delegation.json.
VARSIG_ED25519_DAG_CBOR = bytes.fromhex("3401ed01ed011371")

_DID_KEY_PREFIX = "did:key:z"  # "z" is the multibase code of base58btc
_ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub, as a varint
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_MAX_DEPTH = 32  # tokens are shallow; this bounds recursion on hostile input

# UCAN times are integer seconds within the range a JavaScript number holds exactly.
UnixTime = Annotated[int, msgspec.Meta(ge=-(2**53 - 1), le=2**53 - 1)]


class DelegationPayload(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The fields of a delegation payload, named as in the specification."""

    iss: str
    aud: str
    sub: str | None  # null only for "powerline" delegations
    cmd: str
    pol: list[Any]
    nonce: bytes
    meta: dict[str, Any] | None = None
    nbf: UnixTime | None = None
    exp: UnixTime | None  # required, but null means "never expires"


class Delegation(DelegationPayload, kw_only=True, frozen=True):
    """A decoded delegation: the payload, its signature, and the exact bytes signed."""

    signature: bytes
    signed: bytes


# --- did:key -------------------------------------------------------------------------------


def _base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = ""
    while number:
        number, digit = divmod(number, 58)
        digits = _BASE58[digit] + digits
    # Each leading zero byte is written as a leading "1".
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + digits


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _BASE58.find(char)
        if digit < 0:
            raise ValueError(f"{char!r} is not a base58btc digit")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def did_key(public_key_bytes: bytes) -> str:
    """The did:key of a raw 32-byte Ed25519 public key."""
    if len(public_key_bytes) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return _DID_KEY_PREFIX + _base58_encode(_ED25519_PUB + public_key_bytes)


def public_key_from_did(did: str) -> bytes:
    """The raw Ed25519 public key a did:key names; ValueError for any other DID."""
    if not did.startswith(_DID_KEY_PREFIX):
        raise ValueError(f"not a base58btc did:key: {did!r}")
    decoded = _base58_decode(did.removeprefix(_DID_KEY_PREFIX))
    if len(decoded) != 34 or not decoded.startswith(_ED25519_PUB):
        raise ValueError(f"not an Ed25519 did:key: {did!r}")
    return decoded[2:]


# --- DAG-CBOR ------------------------------------------------------------------------------


def _head(major: int, argument: int, out: bytearray) -> None:
    # DAG-CBOR requires the shortest form of every length and integer.
    if argument < 24:
        out.append(major << 5 | argument)
        return
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            out.append(major << 5 | info)
            out += argument.to_bytes(size, "big")
            return
    raise ValueError("integer outside the 64-bit range of CBOR")


def _encode(value: Any, out: bytearray) -> None:
    match value:
        case bool():  # before int: bool is an int subclass
            out.append(0xF5 if value else 0xF4)
        case None:
            out.append(0xF6)
        case int():
            _head(*((0, value) if value >= 0 else (1, -1 - value)), out)
        case bytes() | str():
            raw = value if isinstance(value, bytes) else value.encode()
            _head(2 if isinstance(value, bytes) else 3, len(raw), out)
            out += raw
        case list() | tuple():
            _head(4, len(value), out)
            for item in value:
                _encode(item, out)
        case dict() if all(isinstance(key, str) for key in value):
            _head(5, len(value), out)
            # Canonical order: shorter encoded keys first, then bytewise.
            for key in sorted(value, key=lambda k: (len(k.encode()), k.encode())):
                _encode(key, out)
                _encode(value[key], out)
        case _:
            raise TypeError(f"cannot encode {type(value).__name__} as DAG-CBOR")


def encode_dag_cbor(value: Any) -> bytes:
    """Encode `value` as deterministic DAG-CBOR (no floats, tags or CIDs)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _take(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    if pos + size > len(data):
        raise ValueError("truncated")
    return data[pos : pos + size], pos + size


_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}


def _decode_head(data: bytes, pos: int) -> tuple[int, int, int]:
    """Read an item's head: its major type, its argument, and the position after it."""
    (initial,), pos = _take(data, pos, 1)
    major, info = initial >> 5, initial & 0x1F
    if major == 7:
        if initial not in _SIMPLE:
            raise ValueError("floats and other simple values are not supported")
        return major, initial, pos
    if info < 24:
        return major, info, pos
    if info < 28:
        raw, pos = _take(data, pos, 1 << (info - 24))
        return major, int.from_bytes(raw, "big"), pos
    raise ValueError("indefinite lengths are not DAG-CBOR")


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    major, argument, pos = _decode_head(data, pos)
    value: Any
    match major:
        case 0:
            value = argument
        case 1:
            value = -1 - argument
        case 2:
            value, pos = _take(data, pos, argument)
        case 3:
            raw, pos = _take(data, pos, argument)
            value = raw.decode()
        case 4:
            value = []
            for _ in range(argument):
                item, pos = _decode(data, pos, depth + 1)
                value.append(item)
        case 5:
            value = {}
            for _ in range(argument):
                key, pos = _decode(data, pos, depth + 1)
                if not isinstance(key, str):
                    raise ValueError("map keys must be strings")
                value[key], pos = _decode(data, pos, depth + 1)
        case 7:
            value = _SIMPLE[argument]
        case _:
            raise ValueError("tags (CIDs among them) are not supported")
    return value, pos


def decode_dag_cbor(data: bytes) -> Any:
    """Decode one DAG-CBOR item, refusing any encoding but the canonical one.

    Varsig requires the canonical form to be enforced before a signature is checked, so
    that two readers cannot see different values under one signature.
    """
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise ValueError("trailing bytes")
    # Re-encoding catches what a one-pass check would have to spell out: non-shortest
    # integers and lengths, unsorted or duplicate map keys.
    if encode_dag_cbor(value) != data:
        raise ValueError("not in canonical DAG-CBOR form")
    return value


# --- Delegations ---------------------------------------------------------------------------


def _check_command(command: str) -> None:
    # Commands are lowercase paths beginning with "/"; only "/" itself ends with one.
    if not command.startswith("/") or command != command.lower():
        raise ValueError(f"a command is a lowercase path starting with '/': {command!r}")
    if len(command) > 1 and (command.endswith("/") or "//" in command):
        raise ValueError(f"a command has no empty segments: {command!r}")


def delegate(
    issuer_private_key: Ed25519PrivateKey,
    audience_did: str,
    subject_did: str | None,
    command: str,
    policy: list[Any],
    expiration: int | None,
    nonce: bytes,
    not_before: int | None = None,
    meta: dict[str, Any] | None = None,
) -> bytes:
    """Create a signed delegation token (DAG-CBOR bytes) from the issuer to the audience.

    Times are Unix seconds; `expiration` None is the spec's "never expires".
    """
    _check_command(command)
    payload: dict[str, Any] = {
        "iss": did_key(issuer_private_key.public_key().public_bytes_raw()),
        "aud": audience_did,
        "sub": subject_did,
        "cmd": command,
        "pol": policy,
        "nonce": nonce,
        "exp": expiration,
    }
    if meta is not None:
        payload["meta"] = meta
    if not_before is not None:
        payload["nbf"] = not_before
    signed = encode_dag_cbor({"h": VARSIG_ED25519_DAG_CBOR, DELEGATION_TAG: payload})
    # A two-item array header, then the signature and the signed bytes verbatim.
    return b"\x82" + encode_dag_cbor(issuer_private_key.sign(signed)) + signed


def decode_delegation(token: bytes) -> Delegation:
    """Decode a delegation token; its signature is not checked here.

    Raises `InvalidPayload` (without a pointer: the caller knows where the token sits).
    """
    try:
        envelope = decode_dag_cbor(token)
    except ValueError as error:
        raise InvalidPayload(f"delegation is not DAG-CBOR: {error}") from error
    match envelope:
        case [bytes() as signature, {"h": bytes() as header, **tagged}] if len(tagged) == 1:
            signed = encode_dag_cbor(envelope[1])
        case _:
            raise InvalidPayload("delegation is not a [signature, {h, payload}] envelope")
    if header != VARSIG_ED25519_DAG_CBOR:
        raise InvalidPayload("delegation is not signed with Ed25519 over DAG-CBOR")
    if len(signature) != 64:
        raise InvalidPayload("an Ed25519 signature is 64 bytes")
    if DELEGATION_TAG not in tagged:
        raise InvalidPayload(f"delegation payload is not tagged {DELEGATION_TAG!r}")
    try:
        # bytes stay bytes: without this a text nonce would be read as base64.
        payload = msgspec.convert(tagged[DELEGATION_TAG], DelegationPayload, builtin_types=(bytes,))
    except msgspec.ValidationError as error:
        raise InvalidPayload(f"delegation payload: {error}") from error
    return Delegation(
        **msgspec.structs.asdict(payload),
        signature=signature,
        signed=signed,
    )
