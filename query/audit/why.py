"""The why-report: one decision, everything it saw and did, and what about it verifies.

A report has four parts:

- `decision`: the signed payload exactly as the service recorded it (inputs, context,
  retrieval, prompt, model, steps, output, usage, policy, delegation, freshness, ...).
- `analysis`: what follows from the payload alone at `generated_at`: the freshness of each
  context snapshot and of the decision, and the timeline of its steps.
- `verification`: the checks the server made now: signature and key validity at
  `occurred_at`, leaf and inclusion in the latest checkpoint, the erasure state of every
  referenced blob, the delegation chain (who authorized the decision, each rule of
  docs/delegation.md at the entry's integration time) and every replay of the decision
  the checkpoint covers, each with its own leaf, inclusion and signature checks. A check
  not made says so.
- `evidence`: the exact envelope, the entry fields, the signed checkpoint, the inclusion
  proof, the signing key, what the ledger knows of the delegation chain, and the same
  envelope, entry, proof and key for each replay, so that `prov verify-report` can
  recompute `decision`, `analysis` and every cryptographic claim offline
  (`query.audit.report_check`). That the list of replays is complete is the server's word.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from ledger.delegation.report import chain_evidence, chain_view
from ledger.errors import NotFound, RecordRejected
from ledger.indexes.replays import leaf_reference, replays_of
from ledger.keys.keyring import get_key
from ledger.log.entry import rfc3339
from ledger.log.note import NoteVerifier
from ledger.log.store import RebuiltEntry, StoredCheckpoint, latest_checkpoint, rebuild_entries
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.storage.schema import blobs, log_entries
from query.audit.checks import inclusion_in, parse_stored, signature_status

REPORT_FORMAT = "prov.why/v1"


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
    if len(record_id) > 256 or "\x00" in record_id:
        return False
    try:
        record_id.encode()
    except UnicodeEncodeError:
        return False
    return True


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
    # Every entry of the report is proved into this one checkpoint.
    stored_checkpoint = latest_checkpoint(connection)
    inclusion = inclusion_in(connection, stored_checkpoint, verifier, origin, index, rebuilt.leaf)
    generated_at = rfc3339(now_us)
    decision = (
        None if isinstance(candidate, RecordRejected) else msgspec.json.decode(candidate.payload)
    )
    authority = chain_evidence(connection, tenant, index, decision)
    replays = [
        _replay(connection, verifier, origin, stored_checkpoint, entry.leaf_hash, replay_index)
        for replay_index in replays_of(
            connection,
            tenant,
            record_id,
            before=None if stored_checkpoint is None else stored_checkpoint.tree_size,
        )
    ]
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
            "replays": replays_status([item for item, _ in replays]),
        },
        "evidence": {
            "envelope": base64.b64encode(entry.envelope).decode(),
            "entry": entry_evidence(rebuilt),
            "checkpoint": inclusion.get("checkpoint"),
            "inclusion_proof": inclusion.get("proof"),
            "signing_key": key_evidence(connection, signature),
            "delegation": authority,
            "replays": [evidence for _, evidence in replays],
        },
    }


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
    if key is None:
        return None
    return key.to_json() | {"public_key": base64.b64encode(key.public_key).decode()}


def _replay(
    connection: Connection,
    verifier: NoteVerifier,
    origin: str,
    stored_checkpoint: StoredCheckpoint | None,
    decision_leaf: bytes,
    index: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One replay of the decision: what the report says of it, and its evidence."""
    [rebuilt] = rebuild_entries(connection, index, index + 1)
    entry = rebuilt.stored
    candidate = parse_stored(entry.envelope)
    signature = signature_status(connection, candidate)
    inclusion = inclusion_in(connection, stored_checkpoint, verifier, origin, index, rebuilt.leaf)
    replay = (
        None if isinstance(candidate, RecordRejected) else msgspec.json.decode(candidate.payload)
    )
    item = replay_item(
        entry.record_id,
        index,
        entry.leaf_hash.hex(),
        replay,
        decision_leaf,
        leaf="valid" if rebuilt.leaf == entry.leaf_hash else "invalid",
        inclusion=inclusion["status"],
        signature=signature,
    )
    evidence = {
        "envelope": base64.b64encode(entry.envelope).decode(),
        "entry": entry_evidence(rebuilt),
        "inclusion_proof": inclusion.get("proof"),
        "signing_key": key_evidence(connection, signature),
    }
    return item, evidence


def replay_item(
    record_id: str,
    index: int,
    leaf_hash: str,
    replay: dict[str, Any] | None,
    decision_leaf: bytes,
    *,
    leaf: str,
    inclusion: str,
    signature: dict[str, Any],
) -> dict[str, Any]:
    """What the report says of one replay: its entry, the checks of its leaf, inclusion,
    signature and link to the decision's entry, and what its signed payload says."""
    model = None if replay is None else replay["model"]
    return {
        "id": record_id,
        "index": index,
        "leaf_hash": leaf_hash,
        "leaf": leaf,
        "inclusion": inclusion,
        "signature": signature,
        # The replay names this very entry of the decision, not just its id.
        "link": "invalid"
        if replay is None or replay["replay_of_leaf"] != leaf_reference(decision_leaf)
        else "valid",
        "occurred_at": None if replay is None else replay["occurred_at"],
        "mode": None if replay is None else replay["mode"],
        "model": None
        if model is None
        else {name: model.get(name) for name in ("provider", "name", "version")},
        "batch": None if replay is None else replay.get("batch"),
        "verdict": None if replay is None else replay["verdict"],
        "summary": None if replay is None else replay_summary(replay),
    }


def replay_summary(replay: dict[str, Any]) -> str | None:
    """One line on how the replay differs from the record; None when it is identical."""
    match replay["verdict"]:
        case "diverged":
            divergence = replay["divergence"]
            return (
                f"{divergence['kind']} at recorded step {divergence['recorded_step']}: "
                f"{divergence['detail']}"
            )
        case "failed":
            error = replay["error"]
            return f"{error['type']}: {error['message']}"
        case "changed":
            paths = [change["path"] or "/" for change in replay["diff"].get("decision", [])]
            return f"decision fields changed: {', '.join(paths) or 'none listed'}"
        case "equivalent":
            return "the same decision; the text differs"
    return None


_CHECKED = ("leaf", "inclusion", "link")


def replays_status(items: list[dict[str, Any]]) -> dict[str, Any]:
    """`none`, `recorded` (with the count by verdict), or `invalid` when a listed replay
    fails a check. Whether the list is complete is the server's word."""
    if not items:
        return {
            "status": "none",
            "count": 0,
            "detail": "no replay of this decision is recorded",
            "replays": [],
        }
    failing = [
        item
        for item in items
        if item["signature"]["status"] != "valid"
        or any(item[check] != "valid" for check in _CHECKED)
    ]
    if failing:
        status = "invalid"
        detail = "the replay at entry " + ", ".join(str(item["index"]) for item in failing)
        detail += " does not verify"
    else:
        verdicts: dict[str, int] = {}
        for item in items:
            verdicts[item["verdict"]] = verdicts.get(item["verdict"], 0) + 1
        status = "recorded"
        detail = f"{len(items)} replay{'s' if len(items) > 1 else ''} recorded: " + ", ".join(
            f"{count} {verdict}" for verdict, count in verdicts.items()
        )
    return {"status": status, "count": len(items), "detail": detail, "replays": items}


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
    `prov verify-report` recomputes it offline (`ledger.delegation.report`)."""
    return chain_view(decision, at_us, evidence)
