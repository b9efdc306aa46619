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
from ledger.records.context_change import (
    CONTEXT_CHANGE_PAYLOAD_TYPE,
    ContextChange,
    encode_context_change,
)
from ledger.records.decision import DECISION_PAYLOAD_TYPE, Decision, encode_decision
from ledger.records.policy import POLICY_PAYLOAD_TYPE, PolicyRecord, encode_policy

__all__ = [
    "SigningKey",
    "derive_keyid",
    "load_signing_key",
    "public_key_from_pem",
    "save_signing_key",
    "sign_context_change",
    "sign_decision",
    "sign_payload",
    "sign_policy",
]


def sign_decision(decision: Decision, key: SigningKey, keyid: str | None = None) -> bytes:
    """The decision as a DSSE envelope signed by `key`, under `keyid` or the derived one."""
    return sign_payload(DECISION_PAYLOAD_TYPE, encode_decision(decision), key, keyid)


def sign_policy(record: PolicyRecord, key: SigningKey, keyid: str | None = None) -> bytes:
    """A policy registration (`ledger.records.policy`) as a DSSE envelope signed by the
    service that owns the policy, under `keyid` or the derived one."""
    return sign_payload(POLICY_PAYLOAD_TYPE, encode_policy(record), key, keyid)


def sign_payload(
    payload_type: str, payload: bytes, key: SigningKey, keyid: str | None = None
) -> bytes:
    """Any record's payload as a DSSE envelope signed by `key`, under `keyid` or the one
    derived from the key."""
    envelope = dsse.sign_envelope(payload_type, payload, key, keyid or derive_keyid(key.public_key))
    return dsse.encode_envelope(envelope)


def sign_context_change(change: ContextChange, key: SigningKey, keyid: str | None = None) -> bytes:
    """A context change (`ledger.records.context_change`) as a DSSE envelope signed by the
    service that owns the key, under `keyid` or the derived one."""
    envelope = dsse.sign_envelope(
        CONTEXT_CHANGE_PAYLOAD_TYPE,
        encode_context_change(change),
        key,
        keyid or derive_keyid(key.public_key),
    )
    return dsse.encode_envelope(envelope)
