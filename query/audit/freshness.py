"""Freshness answers: may a caller still rely on a decision, and the evidence either way.

`freshness_answer` reads what the freshness index holds of one decision (the changes that
superseded its dependencies, `ledger.indexes.freshness`) and what its payload says of
expiry (`query.audit.freshness_format`), and answers `fresh`, `stale` or `unknown` with the
evidence `prov verify-freshness` checks offline. The format is documented in
`query.audit.freshness_format` and docs/freshness.md.

The stale marks are read before the checkpoint, so every change a mark names is inside the
checkpoint the answer is proved against (the log only grows).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from ledger.errors import EntryAltered, RecordRejected
from ledger.indexes.freshness import (
    Supersession,
    earliest_holder,
    inconsistencies,
    supersessions,
)
from ledger.log.entry import rfc3339
from ledger.log.freshness_verdict import FRESHNESS_FORMAT, sign_verdict
from ledger.log.note import NoteSigner, NoteVerifier
from ledger.log.store import StoredCheckpoint, latest_checkpoint, read_entry
from query.audit.checks import parse_stored
from query.audit.evidence import find_decision_index, record_evidence
from query.audit.freshness_format import (
    earliest_expiry,
    expiry_reasons,
    state_of,
)


def freshness_answer(
    connection: Connection,
    signer: NoteSigner,
    origin: str,
    tenant: str,
    record_id: str,
    *,
    now_us: int,
    evidence: bool = True,
) -> dict[str, Any]:
    """The signed freshness answer for decision `record_id` of `tenant` at `now_us`; without
    `evidence`, only the signed verdict (for callers that trust the ledger's key alone)."""
    index = find_decision_index(connection, tenant, record_id)
    marks = supersessions(connection, index)
    checkpoint = latest_checkpoint(connection)
    if checkpoint is None or checkpoint.tree_size <= index:
        raise EntryAltered(f"no checkpoint covers entry {index}; run `prov verify`")
    verifier = signer.verifier
    entries: dict[str, Any] = {}
    if evidence:
        found = record_evidence(connection, verifier, origin, checkpoint, index)
        candidate, stored = found.candidate, found.rebuilt.stored
        entries[str(index)] = found.evidence
    else:
        # The verdict alone: the stored entry, parsed; no proof and no key to look up.
        entry = read_entry(connection, index)
        assert entry is not None  # `find_decision_index` found it
        candidate, stored = parse_stored(entry.envelope), entry
    if isinstance(candidate, RecordRejected):
        raise EntryAltered(
            f"decision {record_id!r} (entry {index}) no longer verifies: {candidate}"
        )
    decision = msgspec.json.decode(candidate.payload)
    checked_at = rfc3339(now_us)
    reasons, cited = freshness_reasons(connection, tenant, index, decision, checked_at, marks)
    if evidence:
        entries |= _cited(connection, verifier, origin, checkpoint, cited, entries)
    verdict = {
        "answer": FRESHNESS_FORMAT,
        "log": origin,
        "tenant": tenant,
        "id": record_id,
        "index": index,
        "leaf_hash": stored.leaf_hash.hex(),
        "checked_at": checked_at,
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash.hex(),
        "state": state_of(decision, reasons),
        "valid_until": earliest_expiry(decision),
        "reasons": reasons,
    }
    answer = verdict | {"signed": sign_verdict(verdict, signer)}
    if evidence:
        answer["evidence"] = {"checkpoint": checkpoint.note, "entries": entries}
    return answer


def freshness_reasons(
    connection: Connection,
    tenant: str,
    index: int,
    decision: dict[str, Any],
    checked_at: str,
    marks: list[Supersession] | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Why decision `index` is stale at `checked_at` (its payload is `decision`): each passed
    expiry and each superseded dependency, and the log indexes those reasons cite."""
    reasons = expiry_reasons(decision, checked_at)
    cited: list[int] = []
    for mark in supersessions(connection, index) if marks is None else marks:
        reason: dict[str, Any] = {
            "reason": "superseded",
            "key": mark.key,
            "version": mark.version,
            "at_decision": mark.change_idx < index,
            "stale_since": rfc3339(mark.stale_us),
            "change": {
                "index": mark.change_idx,
                "id": mark.change_id,
                "version": mark.change_version,
                "changed_at": rfc3339(mark.changed_us),
            },
        }
        cited.append(mark.change_idx)
        if mark.change_idx < index:
            replaced = earliest_holder(connection, tenant, mark.key, mark.version, mark.change_idx)
            reason["replaced"] = replaced
            cited += [] if replaced is None else [replaced]
        reasons.append(reason)
    return reasons, cited


def freshness_summary(
    connection: Connection, tenant: str, index: int, decision: dict[str, Any], checked_at: str
) -> dict[str, Any]:
    """What the why-report says of freshness now: the state and its reasons (as
    `prov fresh` gives them, there with evidence), and the decisions of the same trace or
    conversation that relied on another version of one of this decision's keys."""
    reasons, _ = freshness_reasons(connection, tenant, index, decision, checked_at)
    inconsistent = [
        {
            "thread": found.thread,
            "key": found.key,
            "version": found.version,
            "other": {
                "id": found.other_id,
                "index": found.other_idx,
                "version": found.other_version,
            },
        }
        for found in inconsistencies(connection, index)
    ]
    return {
        "state": state_of(decision, reasons),
        "reasons": reasons,
        "inconsistent": inconsistent,
    }


def _cited(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    checkpoint: StoredCheckpoint,
    indexes: list[int],
    known: dict[str, Any],
) -> dict[str, Any]:
    """The evidence of each entry in `indexes` not already in `known`."""
    return {
        str(cited): record_evidence(connection, verifier, origin, checkpoint, cited).evidence
        for cited in indexes
        if str(cited) not in known
    }
