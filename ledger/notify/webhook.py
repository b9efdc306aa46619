"""Webhook bodies and their signatures: what a receiver gets, and how it checks it.

Pure Python (msgspec and the Ed25519 primitives), so the server signs with it
(`service.webhooks`) and receivers verify with it through the SDK
(`ingest.client.webhooks.verify_webhook`), which installs without the server's dependencies.

A body is signed the way DSSE signs a payload: Ed25519 over
``PAE(WEBHOOK_PAYLOAD_TYPE, body)``, the body bytes exactly as sent, with the ledger key.
The keyid is the receipts' (`<key name>+<hex key id>`), so the ledger's published verifier
key checks webhooks, receipts and checkpoints alike. The signature travels in one header:

    Prov-Signature: keyid=<keyid>, sig=<base64 signature>

docs/webhooks.md describes the body member by member.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

import msgspec

from ledger.keys import ed25519 as _ed25519
from ledger.log.note import NoteVerifier
from ledger.log.receipt import receipt_keyid
from ledger.records import dsse

WEBHOOK_PAYLOAD_TYPE = "application/vnd.prov.webhook.v1+json"
SIGNATURE_HEADER = "Prov-Signature"
EVENT_ID_HEADER = "Prov-Event-Id"
EVENT_TYPE_HEADER = "Prov-Event-Type"
STALE_EVENT = "decision.stale"
# A monitor crossed its limit or returned within it (docs/monitors.md).
BREACH_EVENT = "monitor.breach"

# A keyid holds no white space (key names have none), so ", sig=" ends it.
_HEADER = re.compile(r"keyid=(?P<keyid>\S+), sig=(?P<sig>[A-Za-z0-9+/_-]+={0,2})")
_MAX_HEADER_CHARS = 1024


class ChangeRef(msgspec.Struct, kw_only=True):
    """The context-change record that made the decisions stale."""

    index: int
    id: str
    key: str
    version: str
    changed_at: str


class StaleDecisionRef(msgspec.Struct, kw_only=True):
    """One dependency (`key` at `version`) of decision `id` (at log `index`) the change
    superseded; a decision that relied on two versions of the key appears twice."""

    index: int
    id: str
    key: str
    version: str


class StaleEventBody(msgspec.Struct, kw_only=True):
    """A `decision.stale` event: up to one chunk of the decisions one change made stale."""

    type: str
    id: str  # `<outbox row>-<first decision index>`: the same on every retry
    log: str
    tenant: str
    sent_at: str
    change: ChangeRef
    decisions: list[StaleDecisionRef]
    more: bool  # further events follow for the same change and subscription


_encoder = msgspec.json.Encoder()


def encode_body(body: StaleEventBody) -> bytes:
    return _encoder.encode(body)


def sign_body(body: bytes, key: _ed25519.SigningKey, keyid: str) -> str:
    """The `Prov-Signature` header value for `body`."""
    signature = key.sign(dsse.pae(WEBHOOK_PAYLOAD_TYPE, body))
    return f"keyid={keyid}, sig={dsse.b64encode(signature)}"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of checking a webhook's signature; true when it verified."""

    fault: str | None = None

    def __bool__(self) -> bool:
        return self.fault is None


def check_signature(body: bytes, header: str, verifier: NoteVerifier) -> SignatureCheck:
    """Whether `header` (the `Prov-Signature` value) signs exactly `body` with the ledger
    key `verifier` names."""
    header = header.strip()
    match = _HEADER.fullmatch(header) if len(header) <= _MAX_HEADER_CHARS else None
    if match is None:
        return SignatureCheck("the signature header is not `keyid=<keyid>, sig=<base64>`")
    expected = receipt_keyid(verifier)
    if match["keyid"] != expected:
        return SignatureCheck(f"signed by key {match['keyid']!r}, not the ledger's {expected!r}")
    try:
        signature = dsse.b64decode(match["sig"])
    except (binascii.Error, ValueError):
        return SignatureCheck("the signature is not base64")
    if not _ed25519.verify(verifier.public_key, dsse.pae(WEBHOOK_PAYLOAD_TYPE, body), signature):
        return SignatureCheck("the signature does not verify over the body")
    return SignatureCheck()
