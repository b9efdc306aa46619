"""Signing a record as a service does: the public face of the ledger's Ed25519 keys.

Services (through the client SDK), the demo and the tests build a `Decision`, sign it with
their service key and send the DSSE envelope. The key id is derived from the public key
unless the service registered the key under its own id.
"""

from __future__ import annotations

from ledger.keys.ed25519 import (
    SigningKey,
    derive_keyid,
    load_signing_key,
    public_key_from_pem,
    save_signing_key,
)
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, encode_decision

__all__ = [
    "SigningKey",
    "derive_keyid",
    "load_signing_key",
    "public_key_from_pem",
    "save_signing_key",
    "sign_decision",
]


def sign_decision(decision: Decision, key: SigningKey, keyid: str | None = None) -> bytes:
    """The decision as a DSSE envelope signed by `key`, under `keyid` or the derived one."""
    envelope = dsse.sign_envelope(
        DECISION_PAYLOAD_TYPE,
        encode_decision(decision),
        key,
        keyid or derive_keyid(key.public_key),
    )
    return dsse.encode_envelope(envelope)
