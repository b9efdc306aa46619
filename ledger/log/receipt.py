"""Receipts: the ledger's signed statement that a record sits at an index in its log.

A receipt is a DSSE envelope signed with the ledger key, whose payload names the log, the
index, the leaf hash, the integration time, the tenant, the record id and the envelope's
SHA-256. Its keyid is `<key name>+<hex key id>`, the first two parts of the ledger's
verifier key, so a client holding that key can check receipts and checkpoints alike.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec

from ledger.log.entry import rfc3339
from ledger.log.note import NoteSigner, NoteVerifier
from ledger.records import dsse
from ledger.records.monitor import MonitorReading

if TYPE_CHECKING:
    # Only a type here: the sequencer needs SQLAlchemy, and clients open receipts without it.
    from ledger.log.sequencer import Appended

RECEIPT_PAYLOAD_TYPE = "application/vnd.prov.receipt.v1+json"


class ReceiptBody(msgspec.Struct, forbid_unknown_fields=True):
    log: str
    index: int
    leaf_hash: str
    integrated_at: str
    tenant: str
    id: str
    envelope_sha256: str


class Receipt(msgspec.Struct, omit_defaults=True):
    """What an append answers per record: the body in the clear and the signed envelope."""

    index: int
    leaf_hash: str
    integrated_at: str
    tenant: str
    id: str
    status: str  # "created", or "existing" for an idempotent retry
    receipt: dsse.Envelope
    # A context change appended now: how many decisions it made stale (docs/freshness.md).
    # Not part of the signed body: `prov fresh` answers for each decision, with evidence.
    invalidated: int | None = None
    # A decision appended now: the state of every monitor it counted toward, with it in
    # the window (docs/monitors.md). Not part of the signed body: a breach is its own record.
    monitors: list[MonitorReading] | None = None


_body_encoder = msgspec.json.Encoder()
_body_decoder = msgspec.json.Decoder(ReceiptBody)


def receipt_keyid(verifier: NoteVerifier) -> str:
    return f"{verifier.name}+{verifier.key_id.hex()}"


def issue_receipt(appended: Appended, signer: NoteSigner, origin: str) -> Receipt:
    body = ReceiptBody(
        log=origin,
        index=appended.index,
        leaf_hash=appended.leaf_hash.hex(),
        integrated_at=rfc3339(appended.integrated_us),
        tenant=appended.tenant,
        id=appended.record_id,
        envelope_sha256=appended.envelope_digest.hex(),
    )
    envelope = dsse.sign_envelope(
        RECEIPT_PAYLOAD_TYPE,
        _body_encoder.encode(body),
        signer.key,
        receipt_keyid(signer.verifier),
    )
    return Receipt(
        index=body.index,
        leaf_hash=body.leaf_hash,
        integrated_at=body.integrated_at,
        tenant=body.tenant,
        id=body.id,
        status="created" if appended.created else "existing",
        receipt=envelope,
        invalidated=appended.invalidated,
        monitors=list(appended.monitors) if appended.monitors else None,
    )


def open_receipt(
    envelope: dsse.Envelope, verifier: NoteVerifier, record_envelope: bytes | None = None
) -> ReceiptBody | None:
    """The receipt's body if the ledger's signature verifies (and, when given, the receipt
    covers exactly `record_envelope`); None otherwise."""
    if envelope.payloadType != RECEIPT_PAYLOAD_TYPE:
        return None
    payload = dsse.payload_bytes(envelope)
    if not dsse.verify_envelope(envelope, payload, receipt_keyid(verifier), verifier.public_key):
        return None
    body = _body_decoder.decode(payload)
    if (
        record_envelope is not None
        and hashlib.sha256(record_envelope).hexdigest() != body.envelope_sha256
    ):
        return None
    return body
