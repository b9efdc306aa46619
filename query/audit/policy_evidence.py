"""The why-report's policy parts: the registered document a decision's policy names, and the
policy checks recorded against the decision, each with its evidence.

- `policy_status`: the policy the decision records, and the registration its digest
  resolves to in the tenant's registry (`query.audit.policy_format.policy_view`), with the
  registration's entry as evidence (its envelope holds the document), so that
  `prov verify-report` checks it as it checks the decision. That no registration exists
  (``unregistered``, a flag) is the server's word.
- `policy_checks`: every policy check of the decision the report's checkpoint covers, as
  `query.audit.policy_format.policy_check_item` describes it, with the envelope, entry,
  inclusion proof and key to check it again offline, as for replays.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from ledger.errors import RecordRejected
from ledger.indexes.policies import policy_checks_of, resolve_digest
from ledger.log.note import NoteVerifier
from ledger.log.store import StoredCheckpoint
from query.audit.evidence import record_evidence
from query.audit.policy_format import policy_check_item, policy_view


def policy_status(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    stored_checkpoint: StoredCheckpoint | None,
    tenant: str,
    decision: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What the report says of the decision's policy, and the evidence of the registration
    its digest resolves to (None when there is none)."""
    policy = None if decision is None else decision.get("policy")
    entry = (
        None
        if not policy
        else resolve_digest(
            connection, tenant, policy["digest"], policy["policy_id"], policy["version"]
        )
    )
    if entry is None or (
        stored_checkpoint is not None and entry.index >= stored_checkpoint.tree_size
    ):
        return policy_view(decision, None, None), None
    checked = record_evidence(connection, verifier, origin, stored_checkpoint, entry.index)
    if isinstance(checked.candidate, RecordRejected):
        # The stored registration no longer parses: show it as the evidence, and let the
        # offline check name what is wrong with it.
        return policy_view(decision, None, None), checked.evidence
    registration = msgspec.json.decode(checked.candidate.payload)
    return policy_view(decision, registration, entry.index), checked.evidence


def policy_checks(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    stored_checkpoint: StoredCheckpoint | None,
    tenant: str,
    record_id: str,
    decision_leaf: bytes,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each policy check of the decision the checkpoint covers: the report's item for it,
    and its evidence."""
    found = []
    for index in policy_checks_of(
        connection,
        tenant,
        record_id,
        before=None if stored_checkpoint is None else stored_checkpoint.tree_size,
    ):
        checked = record_evidence(connection, verifier, origin, stored_checkpoint, index)
        entry = checked.rebuilt.stored
        candidate = checked.candidate
        payload = (
            None
            if isinstance(candidate, RecordRejected)
            else msgspec.json.decode(candidate.payload)
        )
        item = policy_check_item(
            entry.record_id,
            index,
            entry.leaf_hash.hex(),
            payload,
            decision_leaf,
            leaf="valid" if checked.rebuilt.leaf == entry.leaf_hash else "invalid",
            inclusion=checked.inclusion,
            signature=checked.signature,
        )
        found.append((item, checked.evidence))
    return found
