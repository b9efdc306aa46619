"""The why-report: one decision, everything it saw and did, and what about it verifies.

A report has four parts:

- `decision`: the signed payload exactly as the service recorded it (inputs, context,
  retrieval, prompt, model, steps, output, usage, policy, delegation, freshness, ...).
- `analysis`: what follows from the payload alone at `generated_at`: the freshness of each
  context snapshot and of the decision, and the timeline of its steps.
- `verification`: the checks the server made now: signature and key validity at
  `occurred_at`, how the decision is attested (`producer-signed` or `ledger-attested`, by
  the key that verified it; `query.audit.attestation`), leaf and inclusion in the latest
  checkpoint, the erasure state of every referenced blob, the delegation chain (who
  authorized the decision, each rule of docs/delegation.md at the entry's integration
  time), every replay of the decision the checkpoint covers, each with its own leaf,
  inclusion and signature checks, and freshness now (expiries, the context changes that
  superseded what the decision relied on, and decisions of its trace or conversation that
  saw other versions), the registered document the decision's policy digest names
  (`unregistered` flags one that names none), and every policy check of the decision,
  checked as replays are. A check not made says so.
- `evidence`: the exact envelope, the entry fields, the signed checkpoint, the inclusion
  proof, the signing key, what the ledger knows of the delegation chain, and the same
  envelope, entry, proof and key for each replay, policy check and erasure record an
  erased blob names, so that `prov verify-report` can recompute `decision`, `analysis` and
  every cryptographic claim offline (`query.audit.report_check`). That the lists of
  replays and policy checks are complete, and what the registry holds, is the server's
  word.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from ledger.delegation.evidence import chain_evidence
from ledger.errors import RecordRejected
from ledger.indexes.erasures import erasure_requests
from ledger.indexes.replays import replays_of
from ledger.log.entry import rfc3339
from ledger.log.note import NoteVerifier
from ledger.log.store import StoredCheckpoint, latest_checkpoint, rebuild_entries
from ledger.storage.schema import blobs
from query.audit.attestation import attestation_view
from query.audit.checks import inclusion_in, parse_stored, signature_and_key
from query.audit.evidence import (
    RecordEvidence,
    entry_evidence,
    find_decision_index,
    key_evidence,
    key_json,
    record_evidence,
)
from query.audit.freshness import freshness_summary
from query.audit.policy_evidence import policy_checks, policy_status
from query.audit.policy_format import policy_checks_status

# The parts a saved report is checked against offline live in `report_format`, which needs no
# database; they stay importable from here.
from query.audit.report_format import (
    REPORT_FORMAT,
    analyze,
    delegation_status,
    freshness_state,
    referenced_blobs,
    replay_item,
    replay_summary,
    replays_status,
)
from query.audit.witnessed import witnessed_inclusion

__all__ = [
    "REPORT_FORMAT",
    "RecordEvidence",
    "analyze",
    "blob_states",
    "delegation_status",
    "entry_evidence",
    "find_decision_index",
    "freshness_state",
    "key_evidence",
    "record_evidence",
    "referenced_blobs",
    "replay_item",
    "replay_summary",
    "replays_status",
    "why_report",
]


def why_report(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    tenant: str,
    record_id: str,
    *,
    now_us: int,
) -> dict[str, Any]:
    index = find_decision_index(connection, tenant, record_id)
    [rebuilt] = rebuild_entries(connection, index, index + 1)
    entry = rebuilt.stored
    candidate = parse_stored(entry.envelope)
    signature, key = signature_and_key(connection, candidate)
    # Every entry of the report is proved into this one checkpoint.
    stored_checkpoint = latest_checkpoint(connection)
    inclusion = inclusion_in(connection, stored_checkpoint, verifier, origin, index, rebuilt.leaf)
    generated_at = rfc3339(now_us)
    decision = (
        None if isinstance(candidate, RecordRejected) else msgspec.json.decode(candidate.payload)
    )
    authority = chain_evidence(connection, tenant, index, decision)
    signing_key = None if key is None else key_json(key)
    replays = [
        _replay(connection, verifier, origin, stored_checkpoint, entry.leaf_hash, replay_index)
        for replay_index in replays_of(
            connection,
            tenant,
            record_id,
            before=None if stored_checkpoint is None else stored_checkpoint.tree_size,
        )
    ]
    checks = policy_checks(
        connection, verifier, origin, stored_checkpoint, tenant, record_id, entry.leaf_hash
    )
    policy, policy_evidence = policy_status(
        connection, verifier, origin, stored_checkpoint, tenant, decision
    )
    blobs_now = [] if decision is None else blob_states(connection, tenant, decision)
    witnessed, witnessed_evidence = witnessed_inclusion(
        connection, verifier, origin, index, rebuilt.leaf
    )
    return {
        "report": REPORT_FORMAT,
        "generated_at": generated_at,
        "origin": origin,
        "decision": decision,
        "analysis": None if decision is None else analyze(decision, generated_at),
        "verification": {
            "leaf": {"status": "valid" if rebuilt.leaf == entry.leaf_hash else "invalid"},
            "signature": signature,
            # Who vouches for the content, by the key that verified the signature.
            "attestation": attestation_view(decision, signing_key),
            "inclusion": {k: v for k, v in inclusion.items() if k in ("status", "detail")},
            # The newest checkpoint witnesses cosigned that holds the decision (docs/witness.md).
            "witnesses": witnessed,
            "blobs": blobs_now,
            "delegation": delegation_status(decision, entry.integrated_us, authority),
            "replays": replays_status([item for item, _ in replays]),
            # The registered document the decision's policy digest names.
            "policy": policy,
            "policy_checks": policy_checks_status([item for item, _ in checks]),
            # Now, by the freshness index: the server's word here; `prov fresh` gives the
            # same reasons with the evidence to check them offline.
            "freshness": None
            if decision is None
            else freshness_summary(connection, tenant, index, decision, generated_at),
        },
        "evidence": {
            "envelope": base64.b64encode(entry.envelope).decode(),
            "entry": entry_evidence(rebuilt),
            "checkpoint": inclusion.get("checkpoint"),
            "inclusion_proof": inclusion.get("proof"),
            "witnessed": witnessed_evidence,
            "signing_key": signing_key,
            "delegation": authority,
            "replays": [evidence for _, evidence in replays],
            "policy": policy_evidence,
            "policy_checks": [evidence for _, evidence in checks],
            "erasures": erasure_evidence(
                connection, verifier, origin, stored_checkpoint, blobs_now
            ),
        },
    }


def _replay(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    stored_checkpoint: StoredCheckpoint | None,
    decision_leaf: bytes,
    index: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One replay of the decision: what the report says of it, and its evidence."""
    found = record_evidence(connection, verifier, origin, stored_checkpoint, index)
    entry = found.rebuilt.stored
    candidate = found.candidate
    replay = (
        None if isinstance(candidate, RecordRejected) else msgspec.json.decode(candidate.payload)
    )
    item = replay_item(
        entry.record_id,
        index,
        entry.leaf_hash.hex(),
        replay,
        decision_leaf,
        leaf="valid" if found.rebuilt.leaf == entry.leaf_hash else "invalid",
        inclusion=found.inclusion,
        signature=found.signature,
    )
    return item, found.evidence


def blob_states(connection: Connection, tenant: str, decision: dict[str, Any]) -> list[Any]:
    """Each referenced blob: `present`, `erased` (bytes dropped on request; the signed
    digest stays) or `missing` (never uploaded). An erased blob names its erasure: the
    request and the log index of the erasure record that lists it, whose evidence the
    report carries (`erasure_evidence`). Whether a blob is present is the server's word:
    offline, only the digest is covered by the signature."""
    wanted = referenced_blobs(decision)
    rows = (
        connection.execute(
            select(blobs.c.digest, blobs.c.size, blobs.c.erased_us, blobs.c.erasure_idx).where(
                blobs.c.tenant == tenant, blobs.c.digest.in_({digest for _, digest in wanted})
            )
        ).all()
        if wanted
        else []
    )
    stored = {row.digest: row for row in rows}
    requests = erasure_requests(connection, {row.erasure_idx for row in rows} - {None})
    states = []
    for pointer, digest in wanted:
        row = stored.get(digest)
        state: dict[str, Any] = {"pointer": pointer, "digest": digest}
        if row is None:
            state["status"] = "missing"
        elif row.erased_us is not None:
            state |= {"status": "erased", "erased_at": rfc3339(row.erased_us)}
            if row.erasure_idx in requests:
                state["erasure"] = {
                    "request_id": requests[row.erasure_idx],
                    "index": row.erasure_idx,
                }
        else:
            state |= {"status": "present", "size": row.size}
        states.append(state)
    return states


def erasure_evidence(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    stored_checkpoint: StoredCheckpoint | None,
    states: list[Any],
) -> list[dict[str, Any]]:
    """The evidence of each erasure record the blob states name, once each, by index."""
    indexes = sorted({state["erasure"]["index"] for state in states if "erasure" in state})
    return [
        record_evidence(connection, verifier, origin, stored_checkpoint, index).evidence
        for index in indexes
    ]
