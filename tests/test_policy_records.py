"""Policy records at admission, on SQLite and PostgreSQL: a registration is stored with its
registry row; the same document again is an idempotent retry whatever its id; another
document under a registered version, an unknown engine, a document that does not parse and
a digest that is not the document's are each refused with their own problem kind, and
nothing of them is stored. Policy checks must name a decision of their tenant's log."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from httpapi.problems import problem_for
from ledger.errors import InvalidPayload, RecordRejected
from ledger.indexes.policies import list_policies, policy_version, resolve_digest
from ledger.ledger import Ledger
from ledger.log.receipt import Receipt
from ledger.log.store import rebuild_entries
from ledger.records import dsse
from ledger.records.decision import StepError
from ledger.records.policy import (
    PolicyCheckRecord,
    PolicyOutcome,
    PolicyRef,
    decode_policy,
    decode_policy_check,
    document_digest,
    policy_record_id,
)
from ledger.records.replay import REPLAY_SERVICE, leaf_reference
from query.audit.why import find_decision_index
from service.demo import loan_rules
from service.demo.loan_policy import LOAN_POLICY_V1, LOAN_POLICY_V2, POLICY_SERVICE
from service.demo.traffic import demo_signing_key
from tests.policy_support import (
    TENANT,
    counts,
    demo_ledger,
    policy_key_registered,
    policy_record,
    signed,
)


def refusal(ledger: Ledger, raw: bytes) -> RecordRejected:
    [result] = ledger.append([raw])
    assert isinstance(result, RecordRejected), result
    return result


def test_a_registration_is_stored_with_its_registry_row(ledger: Ledger) -> None:
    policy_key_registered(ledger.engine)
    [receipt] = ledger.append([signed(policy_record())])
    assert isinstance(receipt, Receipt)
    assert receipt.status == "created"
    assert receipt.id == "policy:lending:personal_loan@v1"
    with ledger.engine.connect() as connection:
        [entry] = list_policies(connection, TENANT)
        assert (entry.index, entry.policy_id, entry.version, entry.engine) == (
            receipt.index,
            "lending/personal_loan",
            "v1",
            "cedar",
        )
        assert entry.digest == LOAN_POLICY_V1.digest == document_digest(LOAN_POLICY_V1.document)
        found = resolve_digest(connection, TENANT, LOAN_POLICY_V1.digest, "other", "x")
        assert found == entry  # resolved by the document, whatever the decision calls it
        assert policy_version(connection, TENANT, "lending/personal_loan", "v2") is None
        assert resolve_digest(connection, "globex", LOAN_POLICY_V1.digest, "a", "b") is None


def test_the_same_document_again_is_a_retry_another_is_refused_at_version(
    ledger: Ledger,
) -> None:
    policy_key_registered(ledger.engine)
    [first] = ledger.append([signed(policy_record())])
    assert isinstance(first, Receipt)
    # Registered again later, under another record id: the stored registration answers.
    again = policy_record(id="policy-retry-2", registered_at=datetime.now(UTC))
    [retry] = ledger.append([signed(again)])
    assert isinstance(retry, Receipt)
    assert (retry.status, retry.index, retry.id) == ("existing", first.index, first.id)
    # Another document under the same version is refused, naming /payload/version.
    other = policy_record(id="policy-other", document=LOAN_POLICY_V2.document)
    conflict = refusal(ledger, signed(other))
    assert conflict.kind == "policy-version-conflict"
    assert conflict.pointer == "/payload/version"
    assert f"index {first.index}" in conflict.detail
    problem = problem_for(conflict)
    assert (problem.status, problem.errors[0].pointer) == (409, "/payload/version")
    assert counts(ledger.engine)[:2] == (1, 1)


def test_a_batch_registering_one_version_twice_stores_it_once(ledger: Ledger) -> None:
    policy_key_registered(ledger.engine)
    one, two = policy_record(), policy_record(id="policy-dup")
    clash = policy_record(id="policy-clash", document=LOAN_POLICY_V2.document)
    results = ledger.append([signed(one), signed(two), signed(clash)])
    assert isinstance(results[0], Receipt)
    assert results[0].status == "created"
    assert isinstance(results[1], Receipt)
    assert results[1].status == "existing"
    assert results[1].index == results[0].index
    assert isinstance(results[2], RecordRejected)
    assert results[2].kind == "policy-version-conflict"
    assert counts(ledger.engine)[1] == 1


@pytest.mark.parametrize(
    ("changes", "kind", "pointer", "says"),
    [
        ({"engine": "rego"}, "unknown-policy-engine", "/payload/engine", "not one of cedar"),
        (
            {"document": "permit (principal, action, resource) when {"},
            "policy-unparsable",
            "/payload/document",
            "does not parse",
        ),
        (
            {"document": "forbid (principal, action, resource) when { context.nope < 1 };"},
            "policy-unparsable",
            "/payload/document",
            "does not validate",
        ),
        ({"schema": None}, "policy-unparsable", "/payload/schema", "needs its Cedar schema"),
        (
            {"schema": {"Lending": {"actions": 7}}},
            "policy-unparsable",
            "/payload/schema",
            "schema does not parse",
        ),
        (
            {"entry_point": 'Lending::Action::"deny"'},
            "policy-unparsable",
            "/payload/entry_point",
            "none of the schema's actions",
        ),
        (
            {"digest": "sha256:" + "0" * 64},
            "policy-digest-mismatch",
            "/payload/digest",
            "the document hashes to",
        ),
        (
            {"engine": "python", "entry_point": "service.demo.loan_rules"},
            "policy-unparsable",
            "/payload/entry_point",
            "module:function",
        ),
        (
            {
                "engine": "python",
                "entry_point": "service.demo.loan_rules:approve_loan_v1",
                "document": "def approve(:\n",
                "schema": None,
            },
            "policy-unparsable",
            "/payload/document",
            "does not compile",
        ),
        (
            {
                "engine": "python",
                "entry_point": "service.demo.loan_rules:approve_loan_v1",
                "document": "x = 1\n",
                "schema": {"type": 12},
            },
            "policy-unparsable",
            "/payload/schema",
            "not a JSON Schema",
        ),
    ],
    ids=[
        "unknown-engine",
        "cedar-syntax",
        "cedar-type",
        "no-schema",
        "bad-schema",
        "unknown-action",
        "digest",
        "python-entry-point",
        "python-syntax",
        "python-schema",
    ],
)
def test_bad_policies_are_refused_with_their_own_kind_and_nothing_is_stored(
    ledger: Ledger, changes: dict[str, object], kind: str, pointer: str, says: str
) -> None:
    policy_key_registered(ledger.engine)
    before = counts(ledger.engine)
    error = refusal(ledger, signed(policy_record(**changes)))
    assert (error.kind, error.pointer) == (kind, pointer), error
    assert says in error.detail
    assert counts(ledger.engine) == before
    problem = problem_for(error)
    assert problem.type == f"urn:prov:problem:{kind}"
    assert problem.errors[0].pointer == pointer


def test_a_python_policy_registers_with_its_module_as_document(ledger: Ledger) -> None:
    policy_key_registered(ledger.engine)
    source = Path(loan_rules.__file__).read_text(encoding="utf-8")
    record = policy_record(
        id=policy_record_id("lending/personal_loan_py", "v1"),
        engine="python",
        policy_id="lending/personal_loan_py",
        document=source,
        schema={"type": "object", "required": ["credit_score"]},
        entry_point="service.demo.loan_rules:approve_loan_v1",
    )
    [receipt] = ledger.append([signed(record)])
    assert isinstance(receipt, Receipt), receipt
    assert decode_policy(_payload(ledger, receipt.index)).engine == "python"


def test_a_document_stored_as_a_blob_is_checked_from_its_bytes(ledger: Ledger) -> None:
    policy_key_registered(ledger.engine)
    content = LOAN_POLICY_V2.document.encode()
    digest = document_digest(content)
    by_blob = policy_record(
        id="policy-blob", version="v2", document=None, document_blob=digest, digest=digest
    )
    missing = refusal(ledger, signed(by_blob))
    assert (missing.kind, missing.pointer) == (
        "policy-document-unavailable",
        "/payload/document_blob",
    )
    ledger.blobs.put(TENANT, digest, content, subject=None, now_us=0)
    [receipt] = ledger.append([signed(by_blob)])
    assert isinstance(receipt, Receipt), receipt
    # A blob that is not a Cedar document is refused once read.
    junk = b"not cedar at all {"
    junk_digest = document_digest(junk)
    ledger.blobs.put(TENANT, junk_digest, junk, subject=None, now_us=0)
    bad = policy_record(
        id="policy-junk", version="v3", document=None, document_blob=junk_digest, digest=junk_digest
    )
    assert refusal(ledger, signed(bad)).kind == "policy-unparsable"


def test_a_document_and_a_blob_together_are_an_invalid_payload(ledger: Ledger) -> None:
    policy_key_registered(ledger.engine)
    payload = json.loads(msgspec.json.encode(policy_record()))
    payload["document_blob"] = payload["digest"]
    key = demo_signing_key(TENANT, POLICY_SERVICE)
    raw = dsse.encode_envelope(
        dsse.sign_envelope(
            "application/vnd.prov.policy.v1+json",
            json.dumps(payload).encode(),
            key,
            hashlib.sha256(key.public_key).hexdigest(),
        )
    )
    error = refusal(ledger, raw)
    assert error.kind == "invalid-payload"
    assert "document" in (error.pointer or "")


def test_a_policy_check_must_name_a_decision_of_its_log(ledger: Ledger) -> None:
    decisions = demo_ledger(ledger, 3)
    loan = next(d for d in decisions if d.policy is not None)
    with ledger.engine.connect() as connection:
        index = find_decision_index(connection, TENANT, loan.id)
        [rebuilt] = rebuild_entries(connection, index, index + 1)
    check = PolicyCheckRecord(
        id="pc-test",
        tenant=TENANT,
        service=REPLAY_SERVICE,
        occurred_at=datetime.now(UTC),
        decision_id=loan.id,
        decision_leaf=leaf_reference(rebuilt.stored.leaf_hash),
        mode="pinned",
        policy=PolicyRef(
            engine="cedar",
            policy_id="lending/personal_loan",
            version="v1",
            digest=LOAN_POLICY_V1.digest,
        ),
        recorded=PolicyOutcome(result="allow"),
        verdict="error",
        error=StepError(type="x", message="y"),
    )
    assert decode_policy_check(msgspec.json.encode(check)) == check
    for wrong, pointer in (
        ({"decision_id": "loan-nobody"}, "/payload/decision_id"),
        ({"decision_leaf": "sha256:" + "1" * 64}, "/payload/decision_leaf"),
        ({"tenant": "globex", "decision_id": loan.id}, "/payload/decision_id"),
    ):
        [result] = ledger.append_policy_checks([msgspec.structs.replace(check, **wrong)])
        assert isinstance(result, RecordRejected)
        assert (result.kind, result.pointer) == ("policy-check-of-unknown", pointer)
    [stored] = ledger.append_policy_checks([check])
    assert isinstance(stored, Receipt)
    assert counts(ledger.engine)[2] == 1


def test_a_check_verdict_must_fit_its_mode() -> None:
    with pytest.raises(InvalidPayload, match="not one of a pinned check's"):
        decode_policy_check(
            json.dumps(
                {
                    "id": "pc-1",
                    "tenant": "acme",
                    "service": "prov-replay",
                    "occurred_at": "2025-01-01T00:00:00Z",
                    "decision_id": "d-1",
                    "decision_leaf": "sha256:" + "0" * 64,
                    "mode": "pinned",
                    "policy": {
                        "engine": "cedar",
                        "policy_id": "p",
                        "version": "1",
                        "digest": "sha256:" + "0" * 64,
                    },
                    "recorded": {"result": "allow"},
                    "outcome": {"result": "allow"},
                    "verdict": "same",
                }
            ).encode()
        )


def _payload(ledger: Ledger, index: int) -> bytes:
    with ledger.engine.connect() as connection:
        [rebuilt] = rebuild_entries(connection, index, index + 1)
    return dsse.payload_bytes(dsse.decode_envelope(rebuilt.stored.envelope))
