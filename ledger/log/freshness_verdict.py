"""The ledger's signed freshness verdict: its statement that a decision was fresh or stale.

A freshness answer (`GET /v1/decisions/{id}/freshness`, docs/freshness.md) carries its
verdict in the clear and, in `signed`, as a DSSE envelope signed with the ledger key under
the receipts' keyid, so that a client holding the ledger's verifier key can tell an answer
altered in transit from a real one. The evidence that backs each reason is checked apart
(`query.audit.freshness_check`); the SDK checks the signature alone (`open_verdict`). Like
receipts, this needs no database, so the client installs it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.log.note import NoteSigner, NoteVerifier
from ledger.log.receipt import receipt_keyid
from ledger.records import dsse

FRESHNESS_FORMAT = "prov.freshness.v1"
VERDICT_PAYLOAD_TYPE = "application/vnd.prov.freshness.v1+json"
STATES = ("fresh", "stale", "unknown")
# The verdict's members, in the order the server writes them; all of them are signed.
VERDICT_MEMBERS = (
    "answer",
    "log",
    "tenant",
    "id",
    "index",
    "leaf_hash",
    "checked_at",
    "tree_size",
    "root_hash",
    "state",
    "valid_until",
    "reasons",
)

_encoder = msgspec.json.Encoder()


def sign_verdict(verdict: dict[str, Any], signer: NoteSigner) -> dict[str, Any]:
    """The signed envelope of `verdict`, as JSON values, for the answer's `signed`."""
    if tuple(verdict) != VERDICT_MEMBERS:
        raise ValueError(f"a verdict has exactly the members {VERDICT_MEMBERS}")
    envelope = dsse.sign_envelope(
        VERDICT_PAYLOAD_TYPE, _encoder.encode(verdict), signer.key, receipt_keyid(signer.verifier)
    )
    signed: dict[str, Any] = msgspec.to_builtins(envelope)
    return signed


def open_verdict(answer: dict[str, Any], verifier: NoteVerifier) -> dict[str, Any] | None:
    """The verdict the ledger signed, if `answer["signed"]` verifies under `verifier` and
    the answer's verdict members say exactly what it signed; None otherwise."""
    try:
        envelope = msgspec.convert(answer.get("signed"), dsse.Envelope)
        if envelope.payloadType != VERDICT_PAYLOAD_TYPE:
            return None
        payload = dsse.payload_bytes(envelope)
        keyid = receipt_keyid(verifier)
        if not dsse.verify_envelope(envelope, payload, keyid, verifier.public_key):
            return None
        signed = msgspec.json.decode(payload)
    except (msgspec.MsgspecError, ValueError):
        return None
    clear = {member: answer.get(member) for member in VERDICT_MEMBERS}
    return signed if isinstance(signed, dict) and _same(clear, signed) else None


def _same(left: Any, right: Any) -> bool:
    """JSON equality that tells 1 from 1.0 and True from 1, as the signed bytes do."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    return type(left) is type(right) and left == right
