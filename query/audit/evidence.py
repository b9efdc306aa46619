"""The evidence for one log entry, as why-reports and freshness answers carry it.

A report or an answer that makes a claim about an entry carries the entry's envelope, its
entry fields, its inclusion proof in one signed checkpoint and the key that signed it, so
that `prov verify-report` and `prov verify-freshness` check the claim offline.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from ledger.errors import BadRequest, NotFound, RecordRejected
from ledger.keys.keyring import ServiceKey, get_key
from ledger.log.entry import rfc3339
from ledger.log.note import NoteVerifier
from ledger.log.store import RebuiltEntry, StoredCheckpoint, rebuild_entries
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.signed import Candidate
from ledger.storage.schema import log_entries
from query.audit.checks import inclusion_in, parse_stored, signature_and_key
from query.audit.search import MAX_TEXT, check_text


def find_decision_index(connection: Connection, tenant: str, record_id: str) -> int:
    """The log index of decision `record_id` of `tenant`; another tenant's id is not found,
    exactly as a missing one is."""
    if not _could_be_stored(record_id):
        raise NotFound(f"there is no decision {record_id[:80]!r}")
    index = connection.execute(
        select(log_entries.c.idx).where(
            log_entries.c.tenant == tenant,
            log_entries.c.record_id == record_id,
            log_entries.c.payload_type == DECISION_PAYLOAD_TYPE,
        )
    ).scalar_one_or_none()
    if index is None:
        raise NotFound(f"there is no decision {record_id!r}")
    return int(index)


def _could_be_stored(record_id: str) -> bool:
    """False for an id no record can have (over 256 characters, NUL, a lone surrogate),
    which PostgreSQL would refuse as a parameter rather than find nothing."""
    try:
        check_text("id", record_id, MAX_TEXT)
    except BadRequest:
        return False
    return True


def entry_evidence(rebuilt: RebuiltEntry) -> dict[str, Any]:
    """The fields of a log entry, and its bytes and leaf, as the report's evidence."""
    entry = rebuilt.stored
    return {
        "index": entry.index,
        "tenant": entry.tenant,
        "integrated_us": entry.integrated_us,
        "integrated_at": rfc3339(entry.integrated_us),
        "prev_leaf_hash": rebuilt.prev_leaf.hex(),
        "envelope_sha256": rebuilt.envelope_digest.hex(),
        "entry_bytes": rebuilt.data.hex(),
        "leaf_hash": entry.leaf_hash.hex(),
    }


def key_evidence(connection: Connection, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The registered key a valid signature was made with, its public key in base64."""
    key = get_key(connection, signature["keyid"]) if signature["status"] == "valid" else None
    return None if key is None else key_json(key)


def key_json(key: ServiceKey) -> dict[str, Any]:
    """A registered key as evidence: its registry entry and its public key in base64."""
    return key.to_json() | {"public_key": base64.b64encode(key.public_key).decode()}


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    """One stored entry as checked now, and the evidence to check it again offline."""

    candidate: Candidate | RecordRejected  # parsed from the stored bytes, or why not
    rebuilt: RebuiltEntry
    signature: dict[str, Any]  # `signature_status`
    inclusion: str  # `inclusion_in`'s status
    # The envelope, the entry fields, the inclusion proof and the signing key.
    evidence: dict[str, Any]


def record_evidence(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    stored_checkpoint: StoredCheckpoint | None,
    index: int,
) -> RecordEvidence:
    """Entry `index` checked from its stored bytes, with its evidence: the envelope, the
    entry fields, its inclusion proof in `stored_checkpoint` and the key that signed it, so
    that each is checked offline as a report's own entry is."""
    [rebuilt] = rebuild_entries(connection, index, index + 1)
    entry = rebuilt.stored
    candidate = parse_stored(entry.envelope)
    signature, key = signature_and_key(connection, candidate)
    inclusion = inclusion_in(connection, stored_checkpoint, verifier, origin, index, rebuilt.leaf)
    evidence = {
        "envelope": base64.b64encode(entry.envelope).decode(),
        "entry": entry_evidence(rebuilt),
        "inclusion_proof": inclusion.get("proof"),
        "signing_key": None if key is None else key_json(key),
    }
    return RecordEvidence(candidate, rebuilt, signature, inclusion["status"], evidence)
