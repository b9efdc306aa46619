"""`prov show`: one log entry, its decoded payload, and what about it verifies.

Every status here is computed now from stored bytes and keys, never read from a column
that claims it; a check that could not be made says so instead of passing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.admission import Candidate
from ledger.errors import ProofError, RecordRejected
from ledger.ledger import Ledger
from ledger.log.entry import rfc3339
from ledger.log.store import rebuild_entries
from query.audit.checks import inclusion_status, parse_stored, signature_status


def show_entry(ledger: Ledger, index: int) -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        found = rebuild_entries(connection, index, index + 1)
        if not found:
            raise ProofError(f"there is no entry {index}")
        [rebuilt] = found
        entry = rebuilt.stored
        candidate = parse_stored(entry.envelope)
        signature = signature_status(connection, candidate)
        inclusion = inclusion_status(
            connection, ledger.verifier, ledger.origin, index, rebuilt.leaf
        )
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
