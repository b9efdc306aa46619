"""DSSE envelopes (secure-systems-lab/dsse, protocol v1).

The signature covers `PAE(payloadType, payload)` over the payload bytes exactly as sent;
nothing here re-serializes a payload, so no canonical JSON is needed anywhere.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from ledger.errors import MalformedEnvelope
from ledger.keys import ed25519 as _ed25519
from ledger.records._pointer import explain


# The DSSE spec says consumers MUST ignore envelope fields they do not recognize, at the
# top level and in each signature; the stored bytes are the ones received, so nothing of
# such a field is lost by ignoring it here.
class Signature(msgspec.Struct):
    sig: str
    keyid: str = ""


class Envelope(msgspec.Struct):
    payloadType: str  # noqa: N815 - the spec's name
    payload: str
    signatures: list[Signature]


# Each signature whose keyid is registered costs one Ed25519 verification; a handful is
# all that key rotation and co-signing need, and a bound keeps one envelope from holding
# up the batches around it.
MAX_SIGNATURES = 8


_decoder = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: `DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`."""
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


_URL_SAFE = str.maketrans("-_", "+/")


def b64decode(text: str) -> bytes:
    """Decode standard or URL-safe base64, both of which DSSE allows; padding is required.

    `strict_mode` refuses any character outside the alphabet, as `validate=True` does,
    without the regular-expression pass over the whole payload.
    """
    if "-" in text or "_" in text:
        text = text.translate(_URL_SAFE)
    return binascii.a2b_base64(text, strict_mode=True)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_envelope(data: bytes) -> Envelope:
    """Parse envelope JSON strictly; errors name the JSON pointer of the field at fault."""
    try:
        envelope = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        detail, pointer = explain(exc)
        raise MalformedEnvelope(f"envelope: {detail}", pointer=pointer) from None
    except msgspec.DecodeError as exc:
        raise MalformedEnvelope(f"envelope is not valid JSON: {exc}") from None
    if not envelope.signatures:
        raise MalformedEnvelope("envelope carries no signatures", pointer="/signatures")
    return envelope


def payload_bytes(envelope: Envelope) -> bytes:
    try:
        return b64decode(envelope.payload)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope("payload is not base64", pointer="/payload") from None


def signature_bytes(envelope: Envelope, position: int) -> bytes:
    try:
        return b64decode(envelope.signatures[position].sig)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope(
            "signature is not base64", pointer=f"/signatures/{position}/sig"
        ) from None


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def sign_envelope(
    payload_type: str, payload: bytes, key: _ed25519.SigningKey, keyid: str
) -> Envelope:
    signature = key.sign(pae(payload_type, payload))
    return Envelope(
        payloadType=payload_type,
        payload=b64encode(payload),
        signatures=[Signature(sig=b64encode(signature), keyid=keyid)],
    )


def verify_envelope(envelope: Envelope, payload: bytes, keyid: str, public_key: bytes) -> bool:
    """True when some signature carrying `keyid` verifies under `public_key`."""
    message = pae(envelope.payloadType, payload)
    return any(
        verify_signature(envelope, position, message, public_key)
        for position, signature in enumerate(envelope.signatures)
        if signature.keyid == keyid
    )


def verify_signature(envelope: Envelope, position: int, message: bytes, public_key: bytes) -> bool:
    """True when the signature at `position` verifies over `message` (the PAE bytes)."""
    return _ed25519.verify(public_key, message, signature_bytes(envelope, position))
