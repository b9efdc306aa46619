"""The why-report: one decision, everything it saw and did, and what about it verifies.

A report has four parts:

- `decision`: the signed payload exactly as the service recorded it (inputs, context,
  retrieval, prompt, model, steps, output, usage, policy, delegation, freshness, ...).
- `analysis`: what follows from the payload alone at `generated_at`: the freshness of each
  context snapshot and of the decision, and the timeline of its steps.
- `verification`: the checks the server made now: signature and key validity at
  `occurred_at`, leaf and inclusion in the latest checkpoint, the erasure state of every
  referenced blob, the delegation chain (who authorized the decision, each rule of
  docs/delegation.md at the entry's integration time) and the replays. A check not made
  says so.
- `evidence`: the exact envelope, the entry fields, the signed checkpoint, the inclusion
  proof, the signing key and what the ledger knows of the delegation chain, so that
  `prov verify-report` can recompute `decision`, `analysis` and every cryptographic claim
  offline (`query.report_check`).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from ledger.delegation_report import chain_evidence, chain_view
from ledger.entry import rfc3339
from ledger.errors import NotFound, RecordRejected
from ledger.keyring import get_key
from ledger.note import NoteVerifier
from ledger.record import DECISION_PAYLOAD_TYPE
from ledger.schema import blobs, log_entries
from ledger.store import rebuild_entries
from query.checks import inclusion_status, parse_stored, signature_status

REPORT_FORMAT = "prov.why/v1"


def find_decision_index(connection: Connection, tenant: str, record_id: str) -> int:
    """The log index of decision `record_id` of `tenant`; another tenant's id is not found,
    exactly as a missing one is."""
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
    signature = signature_status(connection, candidate)
    inclusion = inclusion_status(connection, verifier, origin, index, rebuilt.leaf)
    generated_at = rfc3339(now_us)
    decision = (
        None if isinstance(candidate, RecordRejected) else msgspec.json.decode(candidate.payload)
    )
    key = get_key(connection, signature["keyid"]) if signature["status"] == "valid" else None
    authority = chain_evidence(connection, tenant, index, decision)
    return {
        "report": REPORT_FORMAT,
        "generated_at": generated_at,
        "origin": origin,
        "decision": decision,
        "analysis": None if decision is None else analyze(decision, generated_at),
        "verification": {
            "leaf": {"status": "valid" if rebuilt.leaf == entry.leaf_hash else "invalid"},
            "signature": signature,
            "inclusion": {k: v for k, v in inclusion.items() if k in ("status", "detail")},
            "blobs": [] if decision is None else blob_states(connection, tenant, decision),
            "delegation": delegation_status(decision, entry.integrated_us, authority),
            "replays": {
                "status": "none",
                "detail": "no replay of this decision is recorded",
                "replays": [],
            },
        },
        "evidence": {
            "envelope": base64.b64encode(entry.envelope).decode(),
            "entry": {
                "index": index,
                "tenant": entry.tenant,
                "integrated_us": entry.integrated_us,
                "integrated_at": rfc3339(entry.integrated_us),
                "prev_leaf_hash": rebuilt.prev_leaf.hex(),
                "envelope_sha256": rebuilt.envelope_digest.hex(),
                "entry_bytes": rebuilt.data.hex(),
                "leaf_hash": entry.leaf_hash.hex(),
            },
            "checkpoint": inclusion.get("checkpoint"),
            "inclusion_proof": inclusion.get("proof"),
            "signing_key": None
            if key is None
            else key.to_json() | {"public_key": base64.b64encode(key.public_key).decode()},
            "delegation": authority,
        },
    }


def analyze(decision: dict[str, Any], generated_at: str) -> dict[str, Any]:
    """What the payload alone says at `generated_at`; `prov verify-report` recomputes it."""
    occurred = _time(decision["occurred_at"])
    now = _time(generated_at)
    freshness = decision.get("freshness") or {}
    return {
        "context": [
            {
                "name": snapshot["name"],
                "version": snapshot["version"],
                "freshness": freshness_state(snapshot.get("valid_until"), occurred, now),
                "content": "blob" if snapshot.get("blob") else "inline",
            }
            for snapshot in decision.get("context", [])
        ],
        "decision_freshness": freshness_state(freshness.get("valid_until"), occurred, now),
        "timeline": [
            _timeline_step(position, step, occurred)
            for position, step in enumerate(decision.get("steps", []))
        ],
    }


def freshness_state(valid_until: str | None, occurred: datetime, now: datetime) -> str:
    """`no-expiry`, `expired-at-decision` (already stale when used), `expired-since` or
    `valid`."""
    if valid_until is None:
        return "no-expiry"
    until = _time(valid_until)
    if until <= occurred:
        return "expired-at-decision"
    return "expired-since" if until <= now else "valid"


def _timeline_step(position: int, step: dict[str, Any], occurred: datetime) -> dict[str, Any]:
    started, ended = _time(step["started_at"]), _time(step["ended_at"])
    usage = step.get("usage") or {}
    return {
        "step": position,
        "kind": step["kind"],
        "label": step.get("name") or step.get("source") or step.get("approver") or step["kind"],
        "offset_ms": round((started - occurred).total_seconds() * 1000, 3),
        "duration_ms": round((ended - started).total_seconds() * 1000, 3),
        "tokens": (usage.get("input_tokens", 0) + usage.get("output_tokens", 0)) or None,
        "error": (step.get("error") or {}).get("type"),
    }


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def referenced_blobs(decision: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, digest) of every blob the payload references, in payload order."""
    found = [
        (f"/context/{position}/blob", snapshot["blob"])
        for position, snapshot in enumerate(decision.get("context", []))
        if snapshot.get("blob")
    ]
    prompt = decision.get("prompt") or {}
    if prompt.get("messages_blob"):
        found.append(("/prompt/messages_blob", prompt["messages_blob"]))
    return found


def blob_states(connection: Connection, tenant: str, decision: dict[str, Any]) -> list[Any]:
    """Each referenced blob: `present`, `erased` (bytes dropped on request; the signed
    digest stays) or `missing` (never uploaded). The state is the server's word: offline,
    only the digest is covered by the signature."""
    wanted = referenced_blobs(decision)
    rows = (
        connection.execute(
            select(blobs.c.digest, blobs.c.size, blobs.c.erased_us).where(
                blobs.c.tenant == tenant, blobs.c.digest.in_({digest for _, digest in wanted})
            )
        ).all()
        if wanted
        else []
    )
    stored = {row.digest: row for row in rows}
    states = []
    for pointer, digest in wanted:
        row = stored.get(digest)
        state: dict[str, Any] = {"pointer": pointer, "digest": digest}
        if row is None:
            state["status"] = "missing"
        elif row.erased_us is not None:
            state |= {"status": "erased", "erased_at": rfc3339(row.erased_us)}
        else:
            state |= {"status": "present", "size": row.size}
        states.append(state)
    return states


def delegation_status(
    decision: dict[str, Any] | None, at_us: int, evidence: dict[str, Any] | None
) -> dict[str, Any]:
    """Who authorized the decision, verified hop by hop at `at_us` (the entry's integration
    time) from the payload and the report's delegation evidence alone, so that
    `prov verify-report` recomputes it offline (`ledger.delegation_report`)."""
    return chain_view(decision, at_us, evidence)
