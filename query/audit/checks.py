"""Verification statuses of one stored record, computed now from stored bytes and keys.

`prov show`, the why-report and the auditor pages share these. Nothing here reads a column
that claims a result; a check that could not be made says so instead of passing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from ledger.errors import NoteError, ProofError, RecordRejected
from ledger.keys.keyring import ServiceKey, get_key
from ledger.log import merkle
from ledger.log.entry import rfc3339, to_micros
from ledger.log.note import NoteVerifier, open_checkpoint
from ledger.log.proofs import inclusion_proof
from ledger.log.store import StoredCheckpoint, latest_checkpoint
from ledger.records.signed import Candidate, parse_record, verify_signer


def parse_stored(envelope: bytes) -> Candidate | RecordRejected:
    """A stored record parsed as admission would, or why it no longer parses (its bytes
    were altered after they were admitted)."""
    try:
        return parse_record(envelope, max_bytes=len(envelope))
    except RecordRejected as error:
        return error


def signature_status(
    connection: Connection, candidate: Candidate | RecordRejected
) -> dict[str, Any]:
    """The record's signature, and whether its key was valid when the decision was made.

    A key revoked after the decision does not make its signature false, so that shows as
    `key_revoked_at`; one revoked at or before `occurred_at` fails the check."""
    return signature_and_key(connection, candidate)[0]


def signature_and_key(
    connection: Connection, candidate: Candidate | RecordRejected
) -> tuple[dict[str, Any], ServiceKey | None]:
    """`signature_status`, and the key it verified under (None unless valid), so that the
    evidence of the key needs no second lookup."""
    if isinstance(candidate, RecordRejected):
        return {"status": "invalid", "kind": candidate.kind, "detail": str(candidate)}, None
    keys = {
        signature.keyid: key
        for signature in candidate.envelope.signatures
        if (key := get_key(connection, signature.keyid))
    }
    try:
        key = verify_signer(candidate, keys, allow_revoked=True)
    except RecordRejected as error:
        return {"status": "invalid", "kind": error.kind, "detail": str(error)}, None
    occurred_us = to_micros(candidate.decision.occurred_at)
    if key.revoked_us is not None and key.revoked_us <= occurred_us:
        return {
            "status": "invalid",
            "kind": "key-revoked",
            "detail": f"keyid {key.keyid} was revoked at {rfc3339(key.revoked_us)}, "
            "before the decision",
        }, None
    return {
        "status": "valid",
        "keyid": key.keyid,
        "key_valid_at_occurred_at": True,
        "key_revoked_at": None if key.revoked_us is None else rfc3339(key.revoked_us),
    }, key


def inclusion_status(
    connection: Connection, verifier: NoteVerifier, origin: str, index: int, leaf: bytes
) -> dict[str, Any]:
    """Entry `index`'s leaf (as recomputed from its bytes) proved into the latest checkpoint,
    with the signed checkpoint and the proof, so that a client can check it itself."""
    return inclusion_in(connection, latest_checkpoint(connection), verifier, origin, index, leaf)


def inclusion_in(
    connection: Connection,
    stored: StoredCheckpoint | None,
    verifier: NoteVerifier,
    origin: str,
    index: int,
    leaf: bytes,
) -> dict[str, Any]:
    """`inclusion_status` in a given checkpoint, so that several entries of one report are
    proved into the same tree."""
    if stored is None or stored.tree_size <= index:
        return {"status": "not-yet-checkpointed"}
    try:
        checkpoint = open_checkpoint(stored.note, verifier, origin)
        proof = inclusion_proof(connection, index, checkpoint.size, checkpointed=True)
    except (NoteError, ProofError) as error:
        return {"status": "invalid", "detail": str(error)}
    verified = merkle.verify_inclusion(
        leaf, index, checkpoint.size, proof.proof, checkpoint.root_hash
    )
    return {
        "status": "valid" if verified else "invalid",
        "checkpoint": stored.note,
        "proof": proof.to_json(),
    }
