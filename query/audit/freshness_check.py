"""`prov verify-freshness`: check a freshness answer offline, trusting only a verifier key.

The steps run in order; each names what it found wrong:

1. The answer is a freshness answer of a known format.
2. `signed` is a DSSE envelope signed by the trusted ledger key, and its payload is exactly
   the answer's verdict (every member but `signed` and `evidence`).
3. The checkpoint is signed by the same key for the answer's log, at the answer's tree size
   and root hash.
4. The decision's entry rebuilds from its envelope and entry fields, has the answer's index
   and leaf hash, is proved into the checkpoint, and its payload is a decision of the
   answer's tenant and id signed by a key bound to its tenant and service.
5. The expiry reasons are what the payload says at `checked_at`.
6. Each `superseded` reason: the change's entry verifies as in step 4, is a context change of
   the same tenant and key to the version the answer names, which differs from the one the
   decision relied on (a dependency of the payload); either the change comes after the
   decision, or (`at_decision`) the `replaced` entry, before the change, verifies and named
   the same key at the old version.
7. The state follows from the reasons and the payload.

What only the server can know is listed as unverifiable, never as a pass: that no other
change superseded the decision (for `fresh`, that none did at all) as of the tree size, that
the change cited for `at_decision` was the latest before the decision, and its clock.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import msgspec

from ledger.errors import NoteError
from ledger.log.freshness_verdict import FRESHNESS_FORMAT, open_verdict
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from ledger.log.receipt import receipt_keyid
from ledger.records.context_change import CONTEXT_CHANGE_PAYLOAD_TYPE, ContextChange
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.signed import Candidate, parse_record
from query.audit.freshness_format import (
    dependencies,
    expiry_reasons,
    state_of,
)
from query.audit.report_check import (
    ReportCheck,
    ReportInvalid,
    check_entry,
    check_inclusion,
    check_signature,
    first_difference,
    run_steps,
)


def verify_freshness(answer: Any, verifier: NoteVerifier) -> ReportCheck:
    """Run every step; a failed step stops the ones after it."""
    context: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], str]]] = [
        ("format", lambda: _format(answer)),
        ("signed", lambda: _signed(answer, verifier)),
        ("checkpoint", lambda: _checkpoint(answer, verifier, context)),
        ("decision", lambda: _decision(answer, context)),
        ("expiry", lambda: _expiry(answer, context)),
        ("superseded", lambda: _superseded(answer, context)),
        ("state", lambda: _state(answer, context)),
    ]
    result = run_steps(steps, "answer")
    if result:
        result.unverifiable = _server_claims(answer)
    return result


def _format(answer: Any) -> str:
    if not isinstance(answer, dict) or answer.get("answer") != FRESHNESS_FORMAT:
        raise ReportInvalid(f"not a {FRESHNESS_FORMAT} freshness answer")
    if not isinstance(answer.get("evidence"), dict):
        raise ReportInvalid("the answer carries no evidence (ask with evidence=true)")
    return FRESHNESS_FORMAT


def _signed(answer: dict[str, Any], verifier: NoteVerifier) -> str:
    keyid = receipt_keyid(verifier)
    if open_verdict(answer, verifier) is None:
        raise ReportInvalid(
            f"the answer is not what {keyid} signed (a bad signature, or an altered verdict)"
        )
    return f"signed by {keyid}"


def _checkpoint(answer: dict[str, Any], verifier: NoteVerifier, context: dict[str, Any]) -> str:
    try:
        checkpoint = open_checkpoint(answer["evidence"]["checkpoint"], verifier, answer["log"])
    except NoteError as error:
        raise ReportInvalid(f"checkpoint: {error}") from None
    if (checkpoint.size, checkpoint.root_hash.hex()) != (answer["tree_size"], answer["root_hash"]):
        raise ReportInvalid("the checkpoint is not the tree size and root the answer names")
    context["checkpoint"] = checkpoint
    return f"size {checkpoint.size} signed by {verifier.name}"


def _entry(
    answer: dict[str, Any], checkpoint: Checkpoint, index: int, payload_type: str
) -> tuple[Candidate, bytes]:
    """Entry `index` of the evidence: rebuilt, proved into the checkpoint, of `payload_type`,
    of the answer's tenant, and signed by a key bound to its tenant and service."""
    evidence = answer["evidence"]["entries"].get(str(index))
    if not isinstance(evidence, dict):
        raise ReportInvalid(f"the evidence holds no entry {index}")
    envelope, leaf, found = check_entry(evidence["envelope"], evidence["entry"])
    if found != index:
        raise ReportInvalid(f"the evidence filed under {index} is entry {found}")
    check_inclusion(evidence.get("inclusion_proof"), leaf, index, checkpoint)
    candidate = parse_record(envelope, max_bytes=len(envelope))
    if candidate.envelope.payloadType != payload_type:
        raise ReportInvalid(f"entry {index} is a {candidate.envelope.payloadType}")
    tenant = candidate.decision.tenant
    if tenant != answer["tenant"] or evidence["entry"]["tenant"] != tenant:
        raise ReportInvalid(f"entry {index} belongs to another tenant")
    check_signature(candidate, evidence.get("signing_key"), None)
    return candidate, leaf


def _decision(answer: dict[str, Any], context: dict[str, Any]) -> str:
    index = answer["index"]
    candidate, leaf = _entry(answer, context["checkpoint"], index, DECISION_PAYLOAD_TYPE)
    if leaf.hex() != answer["leaf_hash"]:
        raise ReportInvalid(f"entry {index}'s leaf is not the answer's leaf_hash")
    if candidate.decision.id != answer["id"]:
        raise ReportInvalid(f"entry {index} is decision {candidate.decision.id!r}")
    context["decision"] = msgspec.json.decode(candidate.payload)
    return f"decision {answer['id']!r} is entry {index}, in the checkpoint, signed"


def _expiry(answer: dict[str, Any], context: dict[str, Any]) -> str:
    claimed = [r for r in answer["reasons"] if r["reason"] != "superseded"]
    expected = expiry_reasons(context["decision"], answer["checked_at"])
    changed = first_difference(claimed, expected)
    if changed is not None:
        raise ReportInvalid(f"the expiry reasons are not what the payload says, at {changed}")
    return f"{len(expected)} expiries passed at {answer['checked_at']}"


def _superseded(answer: dict[str, Any], context: dict[str, Any]) -> str:
    checkpoint = context["checkpoint"]
    relied_on = set(dependencies(context["decision"]))
    claimed = [r for r in answer["reasons"] if r["reason"] == "superseded"]
    for reason in claimed:
        key, version, change = reason["key"], reason["version"], reason["change"]
        where = f"change {change['index']} of {key!r}"
        if (key, version) not in relied_on:
            raise ReportInvalid(f"the decision did not rely on {key!r} at {version!r}")
        candidate, _ = _entry(answer, checkpoint, change["index"], CONTEXT_CHANGE_PAYLOAD_TYPE)
        record = candidate.decision
        assert isinstance(record, ContextChange)  # `_entry` checked the payload type
        if (record.key, record.version, record.id) != (key, change["version"], change["id"]):
            raise ReportInvalid(f"{where} is not the change the answer describes")
        if record.version == version:
            raise ReportInvalid(f"{where} names the version the decision relied on")
        after = change["index"] > answer["index"]
        if reason["at_decision"] == after:
            raise ReportInvalid(f"{where}: at_decision does not match the order of the entries")
        if not after:
            _replaced(answer, checkpoint, reason)
    return f"{len(claimed)} superseded dependencies verify"


def _replaced(answer: dict[str, Any], checkpoint: Checkpoint, reason: dict[str, Any]) -> None:
    """The entry before the change that held the version the change replaced."""
    index = reason.get("replaced")
    if not isinstance(index, int) or index >= reason["change"]["index"]:
        raise ReportInvalid("a change before the decision needs an earlier entry it replaced")
    evidence = answer["evidence"]["entries"].get(str(index), {})
    envelope = base64.b64decode(evidence.get("envelope", ""), validate=True)
    payload_type = parse_record(envelope, max_bytes=len(envelope)).envelope.payloadType
    candidate, _ = _entry(answer, checkpoint, index, payload_type)
    payload = msgspec.json.decode(candidate.payload)
    named = (
        {(payload["key"], payload["version"])}
        if payload_type == CONTEXT_CHANGE_PAYLOAD_TYPE
        else set(dependencies(payload))
    )
    if (reason["key"], reason["version"]) not in named:
        raise ReportInvalid(
            f"entry {index} did not hold {reason['key']!r} at {reason['version']!r}"
        )


def _state(answer: dict[str, Any], context: dict[str, Any]) -> str:
    expected = state_of(context["decision"], answer["reasons"])
    if answer["state"] != expected:
        raise ReportInvalid(f"the state is {answer['state']!r}; the reasons say {expected!r}")
    return f"{expected} at {answer['checked_at']}"


def _server_claims(answer: dict[str, Any]) -> list[str]:
    size = answer["tree_size"]
    claims = [
        f"no other change superseded the decision's dependencies as of tree size {size}"
        if answer["state"] != "fresh"
        else f"no change superseded any of the decision's dependencies as of tree size {size}"
    ]
    claims += [
        f"change {r['change']['index']} was the latest change of {r['key']!r} before the decision"
        for r in answer["reasons"]
        if r["reason"] == "superseded" and r["at_decision"]
    ]
    claims.append(f"the answer was made at {answer['checked_at']} (the server's clock)")
    return claims
