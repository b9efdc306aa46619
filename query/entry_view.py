"""`prov show`: one log entry, its decoded payload, and what about it verifies.

Every status here is computed now from stored bytes and keys, never read from a column
that claims it; a check that could not be made says so instead of passing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import merkle
from ledger.admission import Candidate, authenticate, parse_record
from ledger.entry import rfc3339
from ledger.errors import NoteError, ProofError, RecordRejected
from ledger.keyring import get_key
from ledger.ledger import Ledger
from ledger.note import open_checkpoint
from ledger.proofs import inclusion_proof
from ledger.store import StoredEntry, latest_checkpoint, rebuild_entries


def show_entry(ledger: Ledger, index: int) -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        found = rebuild_entries(connection, index, index + 1)
        if not found:
            raise ProofError(f"there is no entry {index}")
        [rebuilt] = found
        entry = rebuilt.stored
        try:
            candidate: Candidate | RecordRejected = parse_record(
                entry.envelope, max_bytes=len(entry.envelope)
            )
        except RecordRejected as error:
            candidate = error
        signature = _signature_status(connection, candidate)
        inclusion = _inclusion_status(ledger, connection, entry, rebuilt.leaf)
    return {
        "entry": {
            "index": index,
            "tenant": entry.tenant,
            "id": entry.record_id,
            "payload_type": entry.payload_type,
            "integrated_at": rfc3339(entry.integrated_us),
            "prev_leaf_hash": rebuilt.prev_leaf.hex(),
            "envelope_sha256": rebuilt.envelope_digest.hex(),
            "leaf_hash": entry.leaf_hash.hex(),
            "entry_bytes": rebuilt.data.hex(),
        },
        "envelope": msgspec.json.decode(entry.envelope),
        "payload": _payload(candidate),
        "verification": {
            "leaf": "valid" if rebuilt.leaf == entry.leaf_hash else "mismatch",
            "signature": signature,
            "inclusion": inclusion,
        },
    }


def _payload(candidate: Candidate | RecordRejected) -> Any:
    if isinstance(candidate, RecordRejected):
        return {"undecodable": str(candidate)}
    return msgspec.json.decode(candidate.payload)


def _signature_status(connection: Any, candidate: Candidate | RecordRejected) -> dict[str, Any]:
    if isinstance(candidate, RecordRejected):
        return {"status": "invalid", "detail": str(candidate)}
    keyids = [signature.keyid for signature in candidate.envelope.signatures]
    keys = {keyid: key for keyid in keyids if (key := get_key(connection, keyid))}
    try:
        admitted = authenticate(candidate, keys, allow_revoked=True)
    except RecordRejected as error:
        return {"status": "invalid", "kind": error.kind, "detail": str(error)}
    key = keys[admitted.keyid]
    return {
        "status": "valid",
        "keyid": key.keyid,
        "key_valid_at_occurred_at": True,
        "key_revoked_at": None if key.revoked_us is None else rfc3339(key.revoked_us),
    }


def _inclusion_status(
    ledger: Ledger, connection: Any, entry: StoredEntry, leaf: bytes
) -> dict[str, Any]:
    stored = latest_checkpoint(connection)
    if stored is None or stored.tree_size <= entry.index:
        return {"status": "not-yet-checkpointed"}
    try:
        checkpoint = open_checkpoint(stored.note, ledger.verifier, ledger.origin)
        proof = inclusion_proof(connection, entry.index, checkpoint.size)
    except (NoteError, ProofError) as error:
        return {"status": "invalid", "detail": str(error)}
    verified = merkle.verify_inclusion(
        leaf, entry.index, checkpoint.size, proof.proof, checkpoint.root_hash
    )
    return {
        "status": "valid" if verified else "invalid",
        "checkpoint": stored.note,
        "proof": proof.to_json(),
    }
