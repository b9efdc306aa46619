"""`prov verify-subject`: check a subject bundle offline, trusting only the ledger's verifier key.

A subject bundle (`prov subject export`, `GET /v1/subjects/{ref}/decisions`) is JSON:

    {"format": "prov.subject-bundle/v1", "generated_at", "origin", "tenant", "subject",
     "contest": the text on how to contest a decision,
     "checkpoint": a C2SP signed checkpoint note,
     "decisions": [{"id", "decision": the signed payload,
                    "evidence": {"envelope", "entry", "inclusion_proof", "signing_key"},
                    "blobs": [{"pointer", "digest", "status", ...}],
                    "explanation": plain text}],
     "erasures": [the evidence of each erasure record a blob above names],
     "next_cursor": null, or where the next page starts}

The evidence of a decision, and of an erasure record, is a why-report's
(`query.audit.why`): the envelope, the entry, the inclusion proof and the signing key. A
blob is `present` with `size` and `bytes` (base64 of the stored bytes: a salted blob with
its salt, so that they hash to the digest), `erased` with `erased_at` and `erasure_index`
(the log index of the erasure record, or null for an erasure that made none), `missing`
(never uploaded) or `unreadable`.

No server and no database: the steps run in order, and the first that fails names the
decision, or the blob, at fault:

1. The bundle is of this format, for one tenant and subject.
2. The checkpoint note is signed by the trusted key, for the bundle's origin.
3. Each envelope hashes to its entry's envelope digest, the entry bytes rebuild from the
   entry fields (of the bundle's tenant), and the leaf is SHA-256(0x00 || entry bytes).
4. Each RFC 9162 inclusion proof takes that leaf to the checkpoint's root.
5. Each envelope holds a decision of the tenant with the listed id, `decision` is exactly
   its signed payload, and its signature verifies under the signing key, bound to the
   tenant and service and valid at `occurred_at` (`query.audit.report_check`).
6. Each decision's signed `subject` is the bundle's.
7. Each decision lists exactly the blobs its payload references, and each present blob's
   bytes hash to the signed digest. Each erasure record the bundle carries passes steps 3
   to 5 (an erasure record of the tenant, signed by the ledger's record key), and each
   blob marked erased by one is listed in it, erased at the time it states.
8. Each explanation is the one `query.subjects.explain` builds from the signed payload, the
   listed blob states and the bundle's contest text.

That a blob erased without a record (or missing, or unreadable) is so, that the list of
decisions is complete, that no key was revoked since and the time the bundle was made are
the server's word, listed as such, never as a pass. Pure Python: the client install runs
it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ledger.blobs.digest import digest_of
from ledger.blobs.salted import is_salted
from ledger.errors import LedgerError, NoteError
from ledger.log.entry import rfc3339, to_micros
from ledger.log.note import Checkpoint, NoteVerifier, open_checkpoint
from ledger.records.decision import DECISION_PAYLOAD_TYPE
from ledger.records.erasure import ErasureRecord
from ledger.records.signed import Candidate, parse_record
from query.audit.report_check import (
    ReportCheck,
    ReportInvalid,
    check_entry,
    check_inclusion,
    check_signature,
    first_difference,
    run_steps,
)
from query.audit.report_format import referenced_blobs
from query.subjects.explain import explain, explanation_text

BUNDLE_FORMAT: Final = "prov.subject-bundle/v1"
BLOB_STATES: Final = ("present", "erased", "missing", "unreadable")
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, binascii.Error)


class _Checked:
    """What the steps found of one decision, for the steps after."""

    def __init__(self) -> None:
        self.leaf = b""
        self.index = -1
        self.candidate: Candidate | None = None
        self.payload: dict[str, Any] = {}


def verify_subject_bundle(bundle: Any, verifier: NoteVerifier) -> ReportCheck:
    """Run every step; the first that fails stops the rest. True when all passed."""
    checked: list[_Checked] = []
    context: dict[str, Checkpoint] = {}
    counts = {"held": 0, "salted": 0, "erased": 0}

    def each(check: Callable[[dict[str, Any], _Checked], None]) -> Callable[[], None]:
        return lambda: _each(bundle, checked, check)

    steps: list[tuple[str, Callable[[], str]]] = [
        ("1. format", lambda: _format(bundle, checked)),
        ("2. checkpoint", lambda: _checkpoint(bundle, verifier, context)),
        (
            "3. entries",
            _then(each(lambda item, found: _entry(bundle, item, found)),
                  lambda: f"{len(checked)} envelopes hash to their entries; leaves recomputed"),
        ),
        (
            "4. inclusion",
            _then(each(lambda item, found: _inclusion(item, found, context["checkpoint"])),
                  lambda: f"{len(checked)} inclusion proofs reach the checkpoint's root"),
        ),
        (
            "5. records",
            _then(each(lambda item, found: _record(bundle, item, found)),
                  lambda: f"{len(checked)} decisions are the signed payloads, signed by keys "
                  "valid when each was made"),
        ),
        (
            "6. subject",
            _then(each(lambda item, found: _subject(bundle, found)),
                  lambda: f"every decision is about {bundle['subject']!r}"),
        ),
        ("7. blobs", lambda: _blobs_step(bundle, checked, context["checkpoint"], counts)),
        (
            "8. explanations",
            _then(each(lambda item, found: _explanation(bundle, item, found)),
                  lambda: "each explanation is what its signed decision and blobs say"),
        ),
    ]  # fmt: skip
    result = run_steps(steps, "subject bundle")
    if result:
        result.unverifiable = _server_claims(bundle)
    return result


def _then(run: Callable[[], None], detail: Callable[[], str]) -> Callable[[], str]:
    def step() -> str:
        run()
        return detail()

    return step


def _each(
    bundle: dict[str, Any],
    checked: list[_Checked],
    check: Callable[[dict[str, Any], _Checked], None],
) -> None:
    """`check` on every decision; a failure names the decision."""
    for item, found in zip(bundle["decisions"], checked, strict=True):
        try:
            check(item, found)
        except (ReportInvalid, LedgerError) as error:
            raise ReportInvalid(f"decision {_name(item)}: {error}") from None
        except _MALFORMED as error:
            raise ReportInvalid(f"decision {_name(item)}: malformed: {error!r}") from None


def _name(item: Any) -> str:
    return repr(item.get("id")) if isinstance(item, dict) else repr(item)


def _format(bundle: Any, checked: list[_Checked]) -> str:
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ReportInvalid(f"not a {BUNDLE_FORMAT} bundle")
    for member in ("tenant", "subject", "contest", "checkpoint", "origin"):
        if not isinstance(bundle.get(member), str):
            raise ReportInvalid(f"the bundle has no {member}")
    decisions = bundle.get("decisions")
    if not isinstance(decisions, list) or not all(
        isinstance(item, dict) and isinstance(item.get("id"), str) for item in decisions
    ):
        raise ReportInvalid("the bundle's decisions are not a list of objects with an id")
    ids = [item["id"] for item in decisions]
    if len(set(ids)) != len(ids):
        twice = next(record_id for record_id in ids if ids.count(record_id) > 1)
        raise ReportInvalid(f"decision {twice!r} is listed twice")
    checked.extend(_Checked() for _ in decisions)
    return f"{len(decisions)} decisions about {bundle['subject']!r} of tenant {bundle['tenant']!r}"


def _checkpoint(bundle: dict[str, Any], verifier: NoteVerifier, context: dict[str, Any]) -> str:
    try:
        checkpoint = open_checkpoint(bundle["checkpoint"], verifier, verifier.name)
    except NoteError as error:
        raise ReportInvalid(f"checkpoint: {error}") from None
    if bundle["origin"] != checkpoint.origin:
        raise ReportInvalid(f"the bundle's origin is not the checkpoint's {checkpoint.origin!r}")
    context["checkpoint"] = checkpoint
    return f"size {checkpoint.size} signed by {verifier.name}"


def _entry(bundle: dict[str, Any], item: dict[str, Any], found: _Checked) -> None:
    evidence = item["evidence"]
    envelope, found.leaf, found.index = check_entry(evidence["envelope"], evidence["entry"])
    if evidence["entry"]["tenant"] != bundle["tenant"]:
        raise ReportInvalid(f"entry {found.index} is of tenant {evidence['entry']['tenant']!r}")
    found.candidate = parse_record(envelope, max_bytes=len(envelope))


def _inclusion(item: dict[str, Any], found: _Checked, checkpoint: Checkpoint) -> None:
    check_inclusion(item["evidence"].get("inclusion_proof"), found.leaf, found.index, checkpoint)


def _record(bundle: dict[str, Any], item: dict[str, Any], found: _Checked) -> None:
    candidate = found.candidate
    assert candidate is not None  # step 3 parsed it
    if candidate.envelope.payloadType != DECISION_PAYLOAD_TYPE:
        raise ReportInvalid(f"entry {found.index} is not a decision")
    record = candidate.decision
    if record.tenant != bundle["tenant"] or record.id != item["id"]:
        raise ReportInvalid(f"entry {found.index} is decision {record.tenant}/{record.id}")
    found.payload = msgspec.json.decode(candidate.payload)
    changed = first_difference(item["decision"], found.payload)
    if changed is not None:
        raise ReportInvalid(f"the listed decision differs from the signed payload at {changed}")
    check_signature(candidate, item["evidence"].get("signing_key"), None)


def _subject(bundle: dict[str, Any], found: _Checked) -> None:
    subject = found.payload.get("subject")
    if subject != bundle["subject"]:
        raise ReportInvalid(f"the signed decision is about {subject!r}, not {bundle['subject']!r}")


def _blobs_step(
    bundle: dict[str, Any], checked: list[_Checked], checkpoint: Checkpoint, counts: dict[str, int]
) -> str:
    """Step 7: the erasure records, then each decision's blobs."""
    try:
        erasures = _erasure_records(bundle, checkpoint)
    except (ReportInvalid, LedgerError) as error:
        raise ReportInvalid(f"erasure record: {error}") from None
    _each(bundle, checked, lambda item, found: _blobs(item, found, erasures, counts))
    held = f"{counts['held']} blobs held hash to their signed digests ({counts['salted']} salted)"
    if not counts["erased"]:
        return held
    return f"{held}; {counts['erased']} erased, each listed by a signed erasure record in the log"


def _erasure_records(bundle: dict[str, Any], checkpoint: Checkpoint) -> dict[int, ErasureRecord]:
    """The erasure records the bundle carries, by log index, each checked as steps 3 to 5
    check a decision."""
    records: dict[int, ErasureRecord] = {}
    for evidence in bundle.get("erasures", []):
        envelope, leaf, index = check_entry(evidence["envelope"], evidence["entry"])
        check_inclusion(evidence.get("inclusion_proof"), leaf, index, checkpoint)
        candidate = parse_record(envelope, max_bytes=len(envelope))
        record = candidate.decision
        if not isinstance(record, ErasureRecord):
            raise ReportInvalid(f"entry {index} is not an erasure record")
        if record.tenant != bundle["tenant"] or evidence["entry"]["tenant"] != bundle["tenant"]:
            raise ReportInvalid(f"entry {index} belongs to another tenant")
        check_signature(candidate, evidence.get("signing_key"), None)
        records[index] = record
    return records


def _blobs(
    item: dict[str, Any],
    found: _Checked,
    erasures: dict[int, ErasureRecord],
    counts: dict[str, int],
) -> None:
    """Step 7 for one decision; a failure names the blob."""
    listed = [(blob["pointer"], blob["digest"]) for blob in item["blobs"]]
    if listed != referenced_blobs(found.payload):
        raise ReportInvalid("the blobs listed are not those its signed payload references")
    for blob in item["blobs"]:
        where = f"blob {blob['digest']} at {blob['pointer']}"
        if blob["status"] not in BLOB_STATES:
            raise ReportInvalid(f"{where}: unknown status {blob['status']!r}")
        if blob["status"] == "erased" and blob.get("erasure_index") is not None:
            _erased_by(blob, erasures.get(blob["erasure_index"]), where)
            counts["erased"] += 1
        if blob["status"] != "present":
            continue
        try:
            data = base64.b64decode(blob["bytes"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise ReportInvalid(f"{where}: its bytes are not base64") from None
        if digest_of(data) != blob["digest"]:
            raise ReportInvalid(f"{where}: its bytes do not hash to its signed digest")
        counts["held"] += 1
        counts["salted"] += is_salted(data)


def _erased_by(blob: dict[str, Any], record: ErasureRecord | None, where: str) -> None:
    index = blob["erasure_index"]
    if record is None:
        raise ReportInvalid(f"{where}: the bundle carries no erasure record {index}")
    if blob["digest"] not in record.digests:
        raise ReportInvalid(f"{where}: erasure record {index} does not list it")
    stated = rfc3339(to_micros(record.erased_at))
    if blob.get("erased_at") != stated:
        raise ReportInvalid(f"{where}: erasure record {index} erased it at {stated}")


def _explanation(bundle: dict[str, Any], item: dict[str, Any], found: _Checked) -> None:
    built = explanation_text(explain(item["id"], found.payload, item["blobs"], bundle["contest"]))
    shown = item["explanation"]
    if shown != built:
        pairs = zip(shown.splitlines(), built.splitlines(), strict=False)
        line = next((n for n, (a, b) in enumerate(pairs, start=1) if a != b), None)
        where = f"line {line}" if line is not None else "its length"
        raise ReportInvalid(
            f"the explanation is not what its signed decision and blobs say ({where} differs)"
        )


def _server_claims(bundle: dict[str, Any]) -> list[str]:
    decisions = bundle["decisions"]
    more = bundle.get("next_cursor")
    claims = [
        f"the {len(decisions)} decisions listed are all the ledger holds about "
        f"{bundle['subject']!r}"
        + (" up to this page (more follow from next_cursor)" if more else "")
    ]
    for item in decisions:
        for blob in item["blobs"]:
            if blob["status"] == "erased" and blob.get("erasure_index") is None:
                state = f"erased at {blob.get('erased_at') or 'an unstated time'}, with no record"
            elif blob["status"] in ("missing", "unreadable"):
                state = blob["status"]
            else:
                continue  # held, or erased by a record step 7 checked
            claims.append(
                f"blob {blob['digest']} of decision {_name(item)} is {state}; only its digest "
                "is signed"
            )
    keys = {
        key["keyid"]: key
        for item in decisions
        if isinstance(key := item["evidence"].get("signing_key"), dict)
    }
    claims += [
        f"key {keyid[:16]}… not revoked as of {bundle.get('generated_at')}"
        for keyid, key in keys.items()
        if key.get("revoked_at") is None
    ]
    claims.append(f"the bundle was made at {bundle.get('generated_at')} (the server's clock)")
    return claims
