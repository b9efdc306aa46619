"""The why-report and its offline check, on both engines.

A report verified offline passes. Changing any single value in it fails, naming the step,
unless that value is one the report itself lists as the server's word (blob states, the
key registry's window, its clock). Decoding a report never needs the server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert

from ledger.errors import NotFound
from ledger.keys.ed25519 import SigningKey
from ledger.ledger import Ledger
from ledger.log import merkle
from ledger.log.note import NoteSigner
from ledger.log.receipt import Receipt
from ledger.log.sequencer import now_micros
from ledger.storage.schema import blobs
from query.audit.report_check import first_difference, verify_report
from query.audit.search import DecisionFilter, search
from query.audit.why import why_report
from tests.support import demo_envelopes

# Values the report marks as the server's word: changing them cannot be detected offline.
SERVER_CLAIMS = (
    "/generated_at",
    "/verification/blobs/",  # the status of each blob; its pointer and digest are checked
    "/evidence/signing_key/valid_from",
    "/evidence/signing_key/valid_until",
    # Which changes superseded the decision, and which decisions of its trace disagree: the
    # server's word in a report (a freshness answer proves them; test_freshness_answers.py).
    "/verification/freshness/inconsistent",
)


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    results = ledger.append(demo_envelopes(ledger.engine, 12, seed=5))
    assert all(isinstance(result, Receipt) for result in results)
    return ledger


def report_for(ledger: Ledger, record_id: str, tenant: str = "acme") -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        return why_report(
            connection, ledger.verifier, ledger.origin, tenant, record_id, now_us=now_micros()
        )


def record_ids(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as connection:
        return [item.id for item in search(connection, DecisionFilter("acme")).decisions]


def leaves(value: Any, pointer: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, member in value.items():
            yield from leaves(member, f"{pointer}/{key}")
    elif isinstance(value, list):
        for position, member in enumerate(value):
            yield from leaves(member, f"{pointer}/{position}")
    else:
        yield pointer


def mutated(report: dict[str, Any], pointer: str) -> dict[str, Any]:
    changed = copy.deepcopy(report)
    *path, last = pointer.split("/")[1:]
    parent: Any = changed
    for segment in path:
        parent = parent[int(segment)] if isinstance(parent, list) else parent[segment]
    key: Any = int(last) if isinstance(parent, list) else last
    value = parent[key]
    if isinstance(value, bool):
        parent[key] = not value
    elif isinstance(value, int | float):
        parent[key] = value + 1
    elif isinstance(value, str):
        # Change one character, keeping hex hex and base64 base64 where possible.
        # Never the last character before base64 padding: some of its bits are padding,
        # which decoders ignore, so flipping it could leave the bytes as they were.
        flipped = {"0": "1", "A": "B", "a": "b"}
        end = len(value.rstrip("=")) - 1 if value.endswith("=") else len(value)
        position = next((i for i, c in enumerate(value[:end]) if c in flipped), None)
        if position is None:
            parent[key] = value + "x"
        else:
            parent[key] = value[:position] + flipped[value[position]] + value[position + 1 :]
    else:
        parent[key] = "x"
    return changed


def test_a_report_verifies_offline_and_says_what_it_cannot_check(filled: Ledger) -> None:
    report = report_for(filled, record_ids(filled)[0])
    verification = report["verification"]
    assert verification["signature"]["status"] == "valid"
    assert verification["inclusion"]["status"] == "valid"
    assert verification["leaf"]["status"] == "valid"
    assert verification["replays"]["status"] == "none"
    assert verification["delegation"]["status"] == "not-checked"  # never shown as a pass
    result = verify_report(report, filled.verifier)
    assert result, result.failure
    assert [step.name for step in result.steps] == [
        "format",
        "checkpoint",
        "entry",
        "inclusion",
        "payload",
        "signature",
        "analysis",
        "verdicts",
        "erasures",
        "policy",
        "policy checks",
        "replays",
    ]
    assert any("generated at" in claim for claim in result.unverifiable)


def test_changing_any_value_of_a_report_fails_its_check(filled: Ledger) -> None:
    report = report_for(filled, record_ids(filled)[1])
    checked = 0
    for pointer in leaves(report):
        if pointer.startswith(SERVER_CLAIMS):
            continue
        result = verify_report(mutated(report, pointer), filled.verifier)
        assert not result, f"a change at {pointer} went unnoticed"
        checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("pointer", "step", "says"),
    [
        ("/evidence/envelope", "entry", "envelope does not hash"),
        ("/evidence/inclusion_proof/proof/0", "inclusion", "does not reach the checkpoint"),
        ("/decision/output/decision/warehouse", "payload", "/output/decision/warehouse"),
        ("/evidence/checkpoint", "checkpoint", "checkpoint"),
        ("/analysis/timeline/0/duration_ms", "analysis", "/timeline/0/duration_ms"),
        ("/verification/signature/status", "verdicts", "signature"),
    ],
)
def test_a_changed_report_names_what_is_wrong(
    filled: Ledger, pointer: str, step: str, says: str
) -> None:
    order_route = next(i for i in record_ids(filled) if i.startswith("order-"))
    result = verify_report(mutated(report_for(filled, order_route), pointer), filled.verifier)
    assert result.failure is not None
    assert result.failure.name == step
    assert says in result.failure.detail


def test_a_report_signed_by_another_log_key_is_refused(filled: Ledger) -> None:
    report = report_for(filled, record_ids(filled)[0])
    stranger = NoteSigner(filled.origin, SigningKey.generate()).verifier
    result = verify_report(report, stranger)
    assert result.failure is not None
    assert result.failure.name == "checkpoint"


def test_another_tenants_decision_is_not_found(filled: Ledger) -> None:
    record_id = record_ids(filled)[0]
    with pytest.raises(NotFound):
        report_for(filled, record_id, tenant="globex")
    with pytest.raises(NotFound):
        report_for(filled, "no-such-decision")


def test_erased_and_missing_blobs_are_reported_and_the_report_still_verifies(
    filled: Ledger,
) -> None:
    loan = next(i for i in record_ids(filled) if i.startswith("loan-"))
    wanted = [blob["digest"] for blob in report_for(filled, loan)["verification"]["blobs"]]
    assert len(wanted) == 3  # the bureau report, the income verification, the messages
    with filled.engine.begin() as connection:
        connection.execute(
            insert(blobs).values(
                tenant="acme", digest=wanted[0], size=3, content=None, created_us=1, erased_us=2
            )
        )
    report = report_for(filled, loan)
    statuses = [blob["status"] for blob in report["verification"]["blobs"]]
    assert statuses == ["erased", "missing", "missing"]
    result = verify_report(report, filled.verifier)
    assert result, result.failure
    assert any("erased" in claim for claim in result.unverifiable)


def test_context_freshness_is_judged_at_the_decision_and_now(filled: Ledger) -> None:
    loan = next(i for i in record_ids(filled) if i.startswith("loan-"))
    report = report_for(filled, loan)
    bureau, income = report["analysis"]["context"]
    # The demo's bureau report was valid for 30 days in mid-2025; it has expired since.
    assert bureau["freshness"] == "expired-since"
    assert income["freshness"] == "no-expiry"


def test_first_difference_names_the_pointer() -> None:
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "/a/1/b"
    assert first_difference({"a": 1}, {"a": 1, "c": 2}) == "/c"
    assert first_difference([1, 2], [1]) == "/1"
    assert first_difference(True, 1) == "/"  # JSON true is not the number 1
    assert first_difference({"x": [1.5]}, {"x": [1.5]}) is None


def test_the_inclusion_proof_in_a_report_is_the_rfc_9162_one(filled: Ledger) -> None:
    report = report_for(filled, record_ids(filled)[3])
    proof = report["evidence"]["inclusion_proof"]
    assert merkle.verify_inclusion(
        bytes.fromhex(report["evidence"]["entry"]["leaf_hash"]),
        proof["index"],
        proof["tree_size"],
        [bytes.fromhex(node) for node in proof["proof"]],
        bytes.fromhex(proof["root_hash"]),
    )
