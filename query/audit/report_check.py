"""`prov verify-report`: check a saved why-report offline, trusting only a verifier key.

No server and no database: every claim is recomputed from the report's evidence. The steps
run in order and each names what it found wrong:

1. The report is a why-report of a known format, with every part present.
2. The checkpoint note is signed by the trusted log key, for that log's origin; when the
   auditor's trusted checkpoint (from `prov audit`) has the same size, the roots agree.
3. The envelope hashes to the entry's envelope digest, the entry bytes rebuild from the
   entry fields, and the leaf hash is SHA-256(0x00 || entry bytes).
4. The RFC 9162 inclusion proof takes that leaf to the checkpoint's root.
5. The envelope's payload decodes as a decision of the entry's tenant, and the report's
   `decision` is exactly that payload.
6. The signature verifies under the signing key (or the key the auditor pinned), which is
   bound to the decision's tenant and service (or is the tenant's record key, whose keyid
   starts with `prov-replay:`, for a decision the ledger built from OpenTelemetry spans)
   and was valid at `occurred_at`. A keyid with that prefix names the record key and no
   other; one whose service disagrees fails.
7. The report's `analysis` is what the payload says at `generated_at`.
8. The report's own verdicts (leaf, signature, inclusion, delegation, the list of blobs)
   are what steps 3 to 6 found and what the payload says, and its `attestation` level is
   the one the verifying key gives: `ledger-attested` for the record key, else
   `producer-signed` (a report made before levels were shown has none, and still
   verifies). Its `witnesses` verdict is what its `witnessed` evidence shows: none, or a
   checkpoint the log signed for the same origin, an inclusion proof of the entry into it,
   and the names on its other signature lines (who they are is the server's word until a
   witness policy checks them, step 11).
9. Each listed replay passes steps 3 to 6 in its own evidence, under the same checkpoint:
   its entry and leaf, its inclusion proof, a payload that replays this decision's entry,
   and a signature by the tenant's replay key valid at its `occurred_at`; the report's
   replay verdicts are what those checks and payloads say. So does each listed policy
   check (a payload that checks this decision's entry, signed by the replay key), and the
   report's policy-check verdicts are what they say; and so does the registration the
   decision's policy digest resolves to (a policy record of the tenant, signed by its
   owner, whose document hashes to that digest), and the report's policy item is what it
   and the payload say. (These two steps run just before the replays'.)
10. Each erasure record in the evidence passes steps 3 to 6 under the same checkpoint (an
   erasure record of the tenant, signed by its record key), and lists every erased blob
   that names it, with the request id and the time the report gives. (This step runs
   right after step 8.)
11. With a witness policy (`--witness`): the checkpoint carries enough verified
   cosignatures by the policy's witnesses, or else the report's `witnessed` evidence does:
   a checkpoint the log signed for the same origin, cosigned by enough of them, and an
   inclusion proof of the same entry into it. (This step runs right after step 4.)

What the server alone can know (whether a blob's bytes are still held, a revocation after
the decision, whether the lists of replays and policy checks are complete, which registered
document the decision's policy digest names, its clock) is listed as a claim that cannot be
checked offline, never as a pass. Every other field of the report is recomputed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from ledger.delegation.report import server_claims
from ledger.errors import LedgerError, NoteError, ProvError, WitnessPolicyUnmet
from ledger.log import merkle
from ledger.log.entry import entry_bytes, rfc3339, to_micros
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from ledger.records import dsse
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.erasure import ErasureRecord
from ledger.records.policy import POLICY_CHECK_PAYLOAD_TYPE, POLICY_PAYLOAD_TYPE, document_digest
from ledger.records.replay import REPLAY_PAYLOAD_TYPE, REPLAY_SERVICE
from ledger.records.signed import Candidate, parse_record
from ledger.witness.cosignature import cosigner_names
from ledger.witness.policy import WitnessPolicy
from query.audit.attestation import RECORD_KEYID_PREFIX, attestation_view, level_of_keyid
from query.audit.auditor import TrustedState, cosigned_by
from query.audit.freshness_format import expiry_reasons, state_of
from query.audit.policy_format import policy_check_item, policy_checks_status, policy_view
from query.audit.report_format import (
    REPORT_FORMAT,
    analyze,
    delegation_status,
    referenced_blobs,
    replay_item,
    replays_status,
)

_PARTS = ("decision", "analysis", "verification", "evidence")


class ReportInvalid(ProvError):
    """A step failed; the message names what is wrong."""

    kind = "report-invalid"
    title = "Why-report does not verify"


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class ReportCheck:
    """The outcome of each step; true when every step passed."""

    steps: list[Step] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failure(self) -> Step | None:
        return next((step for step in self.steps if not step.ok), None)


def first_difference(left: Any, right: Any, pointer: str = "") -> str | None:
    """The RFC 6901 pointer of the first place where two JSON values differ, else None."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(left.keys() | right.keys()):
            if key not in left or key not in right:
                return f"{pointer}/{key}"
            found = first_difference(left[key], right[key], f"{pointer}/{key}")
            if found is not None:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        for position, (a, b) in enumerate(zip(left, right, strict=False)):
            found = first_difference(a, b, f"{pointer}/{position}")
            if found is not None:
                return found
        return None if len(left) == len(right) else f"{pointer}/{min(len(left), len(right))}"
    same = type(left) is type(right) and left == right
    return None if same else pointer or "/"


def verify_report(
    report: Any,
    verifier: NoteVerifier,
    *,
    trusted: TrustedState | None = None,
    service_key: bytes | None = None,
    policy: WitnessPolicy | None = None,
) -> ReportCheck:
    """Run every step; a failed step stops the ones that depend on it."""
    context: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], str]]] = [
        ("format", lambda: _format(report)),
        ("checkpoint", lambda: _checkpoint(report, verifier, trusted, context)),
        ("entry", lambda: _entry(report, context)),
        ("inclusion", lambda: _inclusion(report, context)),
    ]
    if policy is not None:
        steps.append(("witnesses", lambda: _witnesses(report, verifier, policy, context)))
    steps += [
        ("payload", lambda: _payload(report, context)),
        ("signature", lambda: _signature(report, context, service_key)),
        ("analysis", lambda: _analysis(report)),
        ("verdicts", lambda: _verdicts(report, verifier, context)),
        ("erasures", lambda: _erasures(report, context)),
        ("policy", lambda: _policy(report, context)),
        ("policy checks", lambda: _linked_records(report, context, _POLICY_CHECKS)),
        ("replays", lambda: _linked_records(report, context, _REPLAYS)),
    ]
    result = run_steps(steps, "report")
    if result:
        result.unverifiable = _server_claims(report)
    return result


def run_steps(steps: list[tuple[str, Callable[[], str]]], what: str) -> ReportCheck:
    """Run each step in order, stopping at the first that fails: a step raises
    `ReportInvalid` (or a `LedgerError`) naming what is wrong, and a missing or mistyped
    member of the document (`what`) is reported as malformed, never as a crash."""
    result = ReportCheck()
    for name, run in steps:
        try:
            result.steps.append(Step(name, True, run()))
        except (ReportInvalid, LedgerError) as error:
            result.steps.append(Step(name, False, str(error)))
            break
        except (KeyError, TypeError, ValueError, IndexError, binascii.Error) as error:
            result.steps.append(Step(name, False, f"malformed {what}: {error!r}"))
            break
    return result


def _format(report: Any) -> str:
    if not isinstance(report, dict) or report.get("report") != REPORT_FORMAT:
        raise ReportInvalid(f"not a {REPORT_FORMAT} why-report")
    missing = [part for part in _PARTS if not isinstance(report.get(part), dict)]
    if missing:
        raise ReportInvalid(f"the report has no {', '.join(missing)}")
    return REPORT_FORMAT


def _checkpoint(
    report: dict[str, Any],
    verifier: NoteVerifier,
    trusted: TrustedState | None,
    context: dict[str, Any],
) -> str:
    note = report["evidence"].get("checkpoint")
    if not isinstance(note, str):
        raise ReportInvalid("the report carries no checkpoint")
    try:
        checkpoint = open_checkpoint(note, verifier, verifier.name)
    except NoteError as error:
        raise ReportInvalid(f"checkpoint: {error}") from None
    if report.get("origin") != checkpoint.origin:
        raise ReportInvalid(f"the report's origin is not the checkpoint's {checkpoint.origin!r}")
    context["checkpoint"] = checkpoint
    detail = f"size {checkpoint.size} signed by {verifier.name}"
    if trusted is not None and trusted.tree_size == checkpoint.size:
        if trusted.root_hash != checkpoint.root_hash.hex():
            raise ReportInvalid(
                f"checkpoint root at size {checkpoint.size} differs from the trusted one: "
                "the log has forked"
            )
        detail += ", the same as the trusted checkpoint"
    elif trusted is not None:
        detail += f" (trusted size {trusted.tree_size}; run `prov audit` to link them)"
    return detail


def _witnesses(
    report: dict[str, Any],
    verifier: NoteVerifier,
    policy: WitnessPolicy,
    context: dict[str, Any],
) -> str:
    """Step 11: the witnesses of the policy saw a tree holding the entry. The report's
    checkpoint is the newest, usually too new to be cosigned yet; its `witnessed` evidence
    is the newest one witnesses cosigned that holds the entry, with a proof into it."""
    checkpoint: Checkpoint = context["checkpoint"]
    try:
        cosigned = policy.check(report["evidence"]["checkpoint"], verifier)
        return f"the checkpoint of size {checkpoint.size} is {cosigned_by(cosigned, policy)}"
    except WitnessPolicyUnmet as error:
        unmet = error.detail
    witnessed = report["evidence"].get("witnessed")
    if not isinstance(witnessed, dict) or not isinstance(witnessed.get("checkpoint"), str):
        raise WitnessPolicyUnmet(
            f"{unmet}; the report carries no checkpoint that witnesses cosigned"
        )
    note = witnessed["checkpoint"]
    try:
        cosigned_tree = open_checkpoint(note, verifier, checkpoint.origin)
    except NoteError as error:
        raise ReportInvalid(f"the witnessed checkpoint: {error}") from None
    try:
        cosigned = policy.check(note, verifier)
    except WitnessPolicyUnmet as error:
        raise WitnessPolicyUnmet(
            f"the report's checkpoint: {unmet}; its witnessed checkpoint of size "
            f"{cosigned_tree.size}: {error.detail}"
        ) from None
    if cosigned_tree.size == checkpoint.size and cosigned_tree.root_hash != checkpoint.root_hash:
        raise ReportInvalid(
            f"the witnessed checkpoint and the report's checkpoint both have size "
            f"{checkpoint.size} but different roots: the log has forked"
        )
    index = context["index"]
    check_inclusion(witnessed.get("inclusion_proof"), context["leaf"], index, cosigned_tree)
    return (
        f"entry {index} is in the tree of size {cosigned_tree.size}, "
        f"{cosigned_by(cosigned, policy)}"
    )


def _entry(report: dict[str, Any], context: dict[str, Any]) -> str:
    evidence = report["evidence"]
    envelope, leaf, index = check_entry(evidence["envelope"], evidence["entry"])
    context |= {"envelope": envelope, "leaf": leaf, "index": index}
    return f"entry {index}, leaf {leaf.hex()[:16]}…"


def check_entry(encoded_envelope: str, entry: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """The envelope, the leaf recomputed from it and the entry fields, and the index."""
    envelope = base64.b64decode(encoded_envelope, validate=True)
    digest = hashlib.sha256(envelope).digest()
    if digest.hex() != entry["envelope_sha256"]:
        raise ReportInvalid("the envelope does not hash to the entry's envelope_sha256")
    data = entry_bytes(
        int(entry["index"]),
        int(entry["integrated_us"]),
        bytes.fromhex(entry["prev_leaf_hash"]),
        digest,
        entry["tenant"],
    )
    if data.hex() != entry["entry_bytes"]:
        raise ReportInvalid(f"entry {entry['index']}: entry_bytes do not match its fields")
    if entry["integrated_at"] != rfc3339(int(entry["integrated_us"])):
        raise ReportInvalid(f"entry {entry['index']}: integrated_at is not integrated_us")
    leaf = merkle.hash_leaf(data)
    if leaf.hex() != entry["leaf_hash"]:
        raise ReportInvalid(f"entry {entry['index']}: leaf_hash is not SHA-256(0x00 || entry)")
    return envelope, leaf, int(entry["index"])


def _inclusion(report: dict[str, Any], context: dict[str, Any]) -> str:
    checkpoint: Checkpoint = context["checkpoint"]
    index = context["index"]
    check_inclusion(report["evidence"].get("inclusion_proof"), context["leaf"], index, checkpoint)
    return f"entry {index} is in the tree of size {checkpoint.size}"


def check_inclusion(proof: Any, leaf: bytes, index: int, checkpoint: Checkpoint) -> None:
    if not isinstance(proof, dict):
        raise ReportInvalid(f"the report carries no inclusion proof of entry {index}")
    if proof["index"] != index or proof["tree_size"] != checkpoint.size:
        raise ReportInvalid(
            f"the proof is for entry {proof['index']} in size {proof['tree_size']}, "
            f"not entry {index} in the checkpoint's size {checkpoint.size}"
        )
    if proof["leaf_hash"] != leaf.hex() or proof["root_hash"] != checkpoint.root_hash.hex():
        raise ReportInvalid(
            f"the proof's leaf or root hash is not entry {index}'s and the checkpoint's"
        )
    hashes = [bytes.fromhex(node) for node in proof["proof"]]
    if not merkle.verify_inclusion(leaf, index, checkpoint.size, hashes, checkpoint.root_hash):
        raise ReportInvalid(
            f"the inclusion proof of entry {index} does not reach the checkpoint root"
        )


def _payload(report: dict[str, Any], context: dict[str, Any]) -> str:
    candidate = parse_record(context["envelope"], max_bytes=len(context["envelope"]))
    decision = candidate.decision
    if decision.tenant != report["evidence"]["entry"]["tenant"]:
        raise ReportInvalid(f"the payload is for tenant {decision.tenant!r}, not the entry's")
    signed = msgspec.json.decode(candidate.payload)
    changed = first_difference(report["decision"], signed)
    if changed is not None:
        raise ReportInvalid(f"the report's decision differs from the signed payload at {changed}")
    context["candidate"] = candidate
    return f"decision {decision.id!r} matches the signed payload"


def _signature(report: dict[str, Any], context: dict[str, Any], pinned: bytes | None) -> str:
    key = report["evidence"].get("signing_key")
    check_signature(context["candidate"], key, pinned)
    source = "the pinned key" if pinned is not None else "the key the report names"
    return f"signed by {key['keyid'][:16]}… ({source}), valid at occurred_at"


def check_signature(candidate: Candidate, key: Any, pinned: bytes | None) -> None:
    """The record's signature verifies under `key`, which is bound to its tenant and service
    and was valid, and not revoked, at its `occurred_at`."""
    record = candidate.decision
    if not isinstance(key, dict):
        raise ReportInvalid("the report names no signing key")
    public_key = base64.b64decode(key["public_key"], validate=True)
    if pinned is not None and pinned != public_key:
        raise ReportInvalid("the signing key in the report is not the pinned service key")
    record_key = key["keyid"].startswith(RECORD_KEYID_PREFIX)
    if record_key != (key["service"] == REPLAY_SERVICE):
        # The registry gives keyids with this prefix to the ledger's record key alone, so
        # that the keyid tells a ledger-attested decision from a producer-signed one.
        raise ReportInvalid(
            f"key {key['keyid']} is registered for service {key['service']!r}, but keyids "
            f"starting with {RECORD_KEYID_PREFIX!r} belong to the ledger's record key alone"
        )
    # The record key signs the decisions the ledger builds from spans, for the service the
    # spans name (`ledger.records.signed.attests`).
    attested = record_key and candidate.envelope.payloadType == DECISION_PAYLOAD_TYPE
    if key["tenant"] != record.tenant or (key["service"] != record.service and not attested):
        raise ReportInvalid(
            f"key {key['keyid']} signs for {key['tenant']}/{key['service']}, "
            f"not {record.tenant}/{record.service}"
        )
    if not dsse.verify_envelope(candidate.envelope, candidate.payload, key["keyid"], public_key):
        raise ReportInvalid(f"the signature by {key['keyid']} does not verify")
    occurred = to_micros(record.occurred_at)
    window = [_micros(key["valid_from"]), _micros(key.get("valid_until"))]
    if occurred < (window[0] or 0) or (window[1] is not None and occurred >= window[1]):
        raise ReportInvalid(f"key {key['keyid']} was not valid at {record.occurred_at}")
    revoked = _micros(key.get("revoked_at"))
    if revoked is not None and revoked <= occurred:
        raise ReportInvalid(f"key {key['keyid']} was revoked before the record occurred")


def _signature_verdict(key: dict[str, Any]) -> dict[str, Any]:
    """The report's verdict on a signature that verified under `key`."""
    return {
        "status": "valid",
        "keyid": key["keyid"],
        "key_valid_at_occurred_at": True,
        "key_revoked_at": key.get("revoked_at"),
    }


def _analysis(report: dict[str, Any]) -> str:
    expected = analyze(report["decision"], report["generated_at"])
    changed = first_difference(report["analysis"], expected)
    if changed is not None:
        raise ReportInvalid(f"the report's analysis is not what the payload says, at {changed}")
    return f"freshness and timeline recomputed at {report['generated_at']}"


def _verdicts(report: dict[str, Any], verifier: NoteVerifier, context: dict[str, Any]) -> str:
    claims = report["verification"]
    key = report["evidence"]["signing_key"]
    expected = {
        "leaf": {"status": "valid"},
        "inclusion": {"status": "valid"},
        "signature": _signature_verdict(key),
        "delegation": delegation_status(
            report["decision"],
            int(report["evidence"]["entry"]["integrated_us"]),
            report["evidence"].get("delegation"),
        ),
    }
    for name, verdict in expected.items():
        changed = first_difference(claims[name], verdict)
        if changed is not None:
            raise ReportInvalid(f"the report's {name} verdict is not what verifies, at {changed}")
    referenced = [
        {"pointer": pointer, "digest": digest}
        for pointer, digest in referenced_blobs(report["decision"])
    ]
    listed = [{k: blob[k] for k in ("pointer", "digest")} for blob in claims["blobs"]]
    if listed != referenced:
        raise ReportInvalid("the report's blob list is not the blobs the payload references")
    _attestation_verdict(report)
    _freshness_verdict(report)
    _witnessed_verdict(report, verifier, context)
    return "the report's verdicts match what verifies"


def _witnessed_verdict(
    report: dict[str, Any], verifier: NoteVerifier, context: dict[str, Any]
) -> None:
    claim = report["verification"].get("witnesses")
    evidence = report["evidence"].get("witnessed")
    if claim is None and "witnessed" not in report["evidence"]:
        return  # a report made before witnesses were shown
    if evidence is None:
        expected: dict[str, Any] = {"status": "not-yet-witnessed", "witnesses": 0, "names": []}
    else:
        if not isinstance(evidence, dict) or not isinstance(evidence.get("checkpoint"), str):
            raise ReportInvalid("the report's witnessed evidence has no checkpoint")
        checkpoint: Checkpoint = context["checkpoint"]
        try:
            cosigned = open_checkpoint(evidence["checkpoint"], verifier, checkpoint.origin)
        except NoteError as error:
            raise ReportInvalid(f"the witnessed checkpoint: {error}") from None
        check_inclusion(
            evidence.get("inclusion_proof"), context["leaf"], context["index"], cosigned
        )
        names = cosigner_names(evidence["checkpoint"], verifier)
        expected = {
            "status": "valid",
            "tree_size": cosigned.size,
            "witnesses": len(names),
            "names": names,
        }
    changed = first_difference(claim, expected)
    if changed is not None:
        raise ReportInvalid(f"the report's witnesses verdict is not what verifies, at {changed}")


def _attestation_verdict(report: dict[str, Any]) -> None:
    """The level the report claims is the one its verifying key gives (by its keyid), and
    the rest of the member is what the payload says."""
    claimed = report["verification"].get("attestation")
    if claimed is None:
        return  # a report made before attestation levels were shown
    key = report["evidence"]["signing_key"]
    level = level_of_keyid(key["keyid"])
    if claimed["level"] != level:
        raise ReportInvalid(
            f"the report's attestation level is {claimed['level']!r}, but the signature "
            f"verifies under {key['keyid']}, which makes the decision {level}, at "
            "/verification/attestation/level"
        )
    changed = first_difference(claimed, attestation_view(report["decision"], key))
    if changed is not None:
        where = "/verification/attestation" + ("" if changed == "/" else changed)
        raise ReportInvalid(
            f"the report's attestation is not what its signing key and payload say, at {where}"
        )


def _freshness_verdict(report: dict[str, Any]) -> None:
    """The expiries the report lists are what the payload says at `generated_at`, and the
    state follows from the reasons; which changes superseded the decision is the server's
    word here (a freshness answer carries their evidence)."""
    freshness = report["verification"].get("freshness")
    if freshness is None:
        return  # a report made before freshness was indexed
    expired = [r for r in freshness["reasons"] if r["reason"] != "superseded"]
    changed = first_difference(expired, expiry_reasons(report["decision"], report["generated_at"]))
    if changed is not None:
        raise ReportInvalid(f"the report's expiries are not what the payload says, at {changed}")
    if freshness["state"] != state_of(report["decision"], freshness["reasons"]):
        raise ReportInvalid(
            f"the report's freshness state {freshness['state']!r} is not its reasons'"
        )


@dataclass(frozen=True)
class _Linked:
    """Records that name the decision's entry (its replays, its policy checks)."""

    noun: str
    key: str  # under `evidence` and `verification`
    payload_type: str
    link: str  # the payload member naming the decision
    verb: str  # what the record does to the decision it names
    item: Callable[..., dict[str, Any]]
    status: Callable[[list[dict[str, Any]]], dict[str, Any]]


_REPLAYS = _Linked(
    "replay", "replays", REPLAY_PAYLOAD_TYPE, "replay_of", "replays", replay_item, replays_status
)
_POLICY_CHECKS = _Linked(
    "policy check",
    "policy_checks",
    POLICY_CHECK_PAYLOAD_TYPE,
    "decision_id",
    "checks",
    policy_check_item,
    policy_checks_status,
)


def _linked_records(report: dict[str, Any], context: dict[str, Any], linked: _Linked) -> str:
    """Step 9: each replay (or policy check) in the evidence verifies and names this
    decision's entry, and the report lists exactly what their checks and payloads say."""
    if linked.key not in report["evidence"]:
        return (
            f"the report predates {linked.noun} evidence: its {linked.noun}s are the server's word"
        )
    items = []
    for position, evidence in enumerate(report["evidence"][linked.key]):
        try:
            items.append(_check_linked(evidence, context, linked))
        except (ReportInvalid, LedgerError) as error:
            raise ReportInvalid(f"{linked.noun} {position}: {error}") from None
    changed = first_difference(report["verification"][linked.key], linked.status(items))
    if changed is not None:
        raise ReportInvalid(
            f"the report's {linked.noun}s are not what their evidence says, at {changed}"
        )
    return f"{len(items)} {linked.noun}s of this entry verify"


def _check_linked(
    evidence: dict[str, Any], context: dict[str, Any], linked: _Linked
) -> dict[str, Any]:
    """Steps 3 to 6 for one replay or policy check, in the decision's checkpoint; the
    report's item for it."""
    decision = context["candidate"].decision
    envelope, leaf, index = check_entry(evidence["envelope"], evidence["entry"])
    check_inclusion(evidence.get("inclusion_proof"), leaf, index, context["checkpoint"])
    candidate = parse_record(envelope, max_bytes=len(envelope))
    if candidate.envelope.payloadType != linked.payload_type:
        raise ReportInvalid(f"entry {index} is not a {linked.noun} record")
    record = candidate.decision
    if record.tenant != decision.tenant or evidence["entry"]["tenant"] != decision.tenant:
        raise ReportInvalid(f"entry {index} belongs to another tenant than the decision")
    payload = msgspec.json.decode(candidate.payload)
    if payload[linked.link] != decision.id:
        raise ReportInvalid(
            f"entry {index} {linked.verb} {payload[linked.link]!r}, not this decision"
        )
    key: Any = evidence.get("signing_key")
    check_signature(candidate, key, None)
    return linked.item(
        record.id,
        index,
        leaf.hex(),
        payload,
        context["leaf"],
        leaf="valid",
        inclusion="valid",
        signature=_signature_verdict(key),
    )


def _erasures(report: dict[str, Any], context: dict[str, Any]) -> str:
    """Step 10: each erasure record in the evidence passes steps 3 to 6 under the same
    checkpoint (an erasure record of the decision's tenant, signed by its record key), and
    each erased blob that names one is listed by it, with its request and time; the
    evidence holds no record no blob names."""
    evidence = report["evidence"].get("erasures")
    if evidence is None:
        return "the report predates erasure evidence: its erasures are the server's word"
    decision = context["candidate"].decision
    records: dict[int, ErasureRecord] = {}
    for position, item in enumerate(evidence):
        envelope, leaf, index = check_entry(item["envelope"], item["entry"])
        check_inclusion(item.get("inclusion_proof"), leaf, index, context["checkpoint"])
        candidate = parse_record(envelope, max_bytes=len(envelope))
        record = candidate.decision
        if not isinstance(record, ErasureRecord):
            raise ReportInvalid(f"erasure {position}: entry {index} is not an erasure record")
        if record.tenant != decision.tenant or item["entry"]["tenant"] != decision.tenant:
            raise ReportInvalid(f"erasure {position}: entry {index} is another tenant's")
        check_signature(candidate, item.get("signing_key"), None)
        records[index] = record
    named: set[int] = set()
    for blob in report["verification"]["blobs"]:
        erasure = blob.get("erasure")
        if erasure is None:
            continue
        listing = records.get(erasure["index"])
        if listing is None:
            raise ReportInvalid(f"blob {blob['pointer']}: no evidence of entry {erasure['index']}")
        if (
            blob["status"] != "erased"
            or blob["digest"] not in listing.digests
            or erasure["request_id"] != listing.request_id
            or blob["erased_at"] != rfc3339(to_micros(listing.erased_at))
        ):
            raise ReportInvalid(
                f"blob {blob['pointer']}: erasure record {erasure['index']} does not say it "
                "was erased by that request at that time"
            )
        named.add(erasure["index"])
    if set(records) != named:
        raise ReportInvalid("the report carries erasure records that no blob names")
    return f"{len(named)} erasure records of this decision's blobs verify"


def _server_claims(report: dict[str, Any]) -> list[str]:
    claims = [
        f"blob {blob['digest']} at {blob['pointer']} is {blob['status']} (only its digest is "
        "signed)"
        for blob in report["verification"].get("blobs", [])
        # An erasure that names its record was checked against it (step 10).
        if "erasure" not in blob or "erasures" not in report["evidence"]
    ]
    key = report["evidence"]["signing_key"]
    if key.get("revoked_at") is None:
        claims.append(f"key {key['keyid'][:16]}… not revoked as of {report['generated_at']}")
    claims += server_claims(report["evidence"].get("delegation"))
    replays = report["verification"]["replays"]
    claims.append(
        f"replays: the {len(replays['replays'])} listed are all the log holds of this decision"
    )
    replay_keys = {
        evidence["signing_key"]["keyid"]: evidence["signing_key"]
        for key in ("replays", "policy_checks")
        for evidence in report["evidence"].get(key, [])
    }
    claims += [
        f"replay key {keyid} not revoked as of {report['generated_at']}"
        for keyid, replay_key in replay_keys.items()
        if replay_key.get("revoked_at") is None
    ]
    claims += _policy_claims(report)
    freshness = report["verification"].get("freshness")
    if freshness is not None:
        claims.append(
            f"freshness now is {freshness['state']!r}, with {len(freshness['reasons'])} reasons "
            f"and {len(freshness['inconsistent'])} inconsistent decisions (check it offline: "
            "`prov fresh ID --json`, then `prov verify-freshness`)"
        )
    claims.append(f"the report was generated at {report['generated_at']} (the server's clock)")
    return claims


def _policy(report: dict[str, Any], context: dict[str, Any]) -> str:
    """The registration the decision's policy digest resolves to, from its evidence: in
    the checkpoint, the tenant's policy record, signed by its owner's key, registering a
    document with that digest; the report's policy item is what it and the payload say."""
    if "policy" not in report["verification"]:
        return "the report predates policy evidence: its policy is the server's word"
    evidence = report["evidence"].get("policy")
    registration: dict[str, Any] | None = None
    index: int | None = None
    if evidence is not None:
        envelope, leaf, index = check_entry(evidence["envelope"], evidence["entry"])
        check_inclusion(evidence.get("inclusion_proof"), leaf, index, context["checkpoint"])
        candidate = parse_record(envelope, max_bytes=len(envelope))
        if candidate.envelope.payloadType != POLICY_PAYLOAD_TYPE:
            raise ReportInvalid(f"policy: entry {index} is not a policy record")
        tenant = context["candidate"].decision.tenant
        if candidate.decision.tenant != tenant or evidence["entry"]["tenant"] != tenant:
            raise ReportInvalid(f"policy: entry {index} belongs to another tenant")
        check_signature(candidate, evidence.get("signing_key"), None)
        registration = msgspec.json.decode(candidate.payload)
        document = registration.get("document")
        if document is not None and document_digest(document) != registration["digest"]:
            raise ReportInvalid(f"policy: entry {index}'s document does not hash to its digest")
        if registration["digest"] != (report["decision"].get("policy") or {}).get("digest"):
            raise ReportInvalid(f"policy: entry {index} registers another document")
    expected = policy_view(report["decision"], registration, index)
    changed = first_difference(report["verification"]["policy"], expected)
    if changed is not None:
        raise ReportInvalid(f"the report's policy is not what its evidence says, at {changed}")
    where = "" if index is None else f", entry {index} holds its document"
    return f"the decision's policy is {expected['status']}{where}"


def _policy_claims(report: dict[str, Any]) -> list[str]:
    """The registry's word on the decision's policy, and on the list of its checks."""
    claims = []
    policy = report["verification"].get("policy")
    if policy is not None and policy["status"] == "unregistered":
        claims.append(f"policy: {policy['detail']} (the registry's word)")
    owner = (report["evidence"].get("policy") or {}).get("signing_key")
    if owner is not None and owner.get("revoked_at") is None:
        claims.append(
            f"policy owner key {owner['keyid'][:16]}… not revoked as of {report['generated_at']}"
        )
    checks = report["verification"].get("policy_checks")
    if checks is not None:
        claims.append(
            f"policy checks: the {len(checks['checks'])} listed are all the log holds of this "
            "decision"
        )
    return claims


def _micros(text: str | None) -> int | None:
    return None if text is None else to_micros(datetime.fromisoformat(text))
