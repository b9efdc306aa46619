"""Policy re-evaluation against the demo, on SQLite and PostgreSQL: the pinned policy
reproduces every demo loan decision; v2 against decisions made under v1 gives the diffs its
oracle (`loan_rules.approve_loan_v2`) gives; each check is a signed record the why-report
lists and `prov verify-report` checks; a stored policy document altered in the database is
named by `prov verify` and is never evaluated."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import BadRequest, NotFound
from ledger.ledger import Ledger
from ledger.records.decision import Decision
from ledger.records.policy import PolicyOutcome
from query.audit.report_check import verify_report
from replay.policy.check import PolicyChecker, recorded_inputs
from replay.policy.errors import PolicyEvaluationFailed
from replay.policy.report import PolicyReport
from replay.policy.report_html import render_report
from service.cli.policy import checked_indexes
from service.demo import loan_rules
from service.demo.loan_policy import LOAN_POLICY_V1
from tests.policy_support import TENANT, counts, demo_ledger
from tests.support import prov
from tests.test_tamper import disable_append_only_guards
from tests.test_why import leaves, mutated, report_for

LOANS = "decision_type=loan.approve"
# The server's word in a report with policy checks: the key registry's windows and its clock.
SERVER_CLAIMS = (
    "/generated_at",
    "/verification/blobs/",
    "/verification/freshness/inconsistent",
)
KEY_WINDOWS = ("/signing_key/valid_from", "/signing_key/valid_until")


@pytest.fixture
def demo(ledger: Ledger) -> tuple[Ledger, list[Decision]]:
    return ledger, demo_ledger(ledger, 90)


def loans(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.id: d for d in decisions if d.decision_type == "loan.approve"}


def batch(ledger: Ledger, against: str | None = None, where: str = LOANS) -> PolicyReport:
    with ledger.engine.connect() as connection:
        indexes = checked_indexes(connection, TENANT, decision_id=None, where=where, limit=1000)
    return PolicyChecker(ledger).check_batch(TENANT, indexes, against)


def test_pinned_reevaluation_reproduces_every_demo_loan_decision(
    demo: tuple[Ledger, list[Decision]],
) -> None:
    ledger, decisions = demo
    expected = loans(decisions)
    report = batch(ledger)
    assert report.mode == "pinned"
    assert report.checked == report.stored == len(expected) == 30
    assert {line.decision_id for line in report.checks} == set(expected)
    assert {line.verdict for line in report.checks} == {"reproduced"}
    assert [p.version for p in report.policies] == ["v1"]
    assert report.policies[0].digest == LOAN_POLICY_V1.digest
    for line in report.checks:
        recorded = expected[line.decision_id].policy
        assert recorded is not None
        assert recorded.engine == "cedar"
        assert line.outcome == PolicyOutcome(result=recorded.result, reasons=recorded.reasons)
    assert counts(ledger.engine)[2] == 30
    # Every decision without a policy is listed as not checked, never as a pass.
    everything = batch(ledger, where="service=order-router")
    assert everything.checked == 0
    assert {item.kind for item in everything.unchecked} == {"bad-request"}


def test_v2_against_decisions_made_under_v1_gives_the_rules_diffs(
    demo: tuple[Ledger, list[Decision]],
) -> None:
    ledger, decisions = demo
    expected = loans(decisions)
    report = batch(ledger, against="v2")
    assert report.mode == "against"
    assert [p.version for p in report.policies] == ["v2"]
    moved: dict[tuple[str, str], int] = {}
    for line in report.checks:
        decision = expected[line.decision_id]
        answer = loan_rules.approve_loan_v2(recorded_inputs(decision))
        oracle = PolicyOutcome(
            result="allow" if answer["approved"] else "deny", reasons=answer["reasons"]
        )
        assert line.outcome == oracle
        assert decision.policy is not None
        before = set(decision.policy.reasons)
        assert line.reasons_added == sorted(set(oracle.reasons) - before)
        assert line.reasons_removed == sorted(before - set(oracle.reasons))
        same = (decision.policy.result, sorted(before)) == (oracle.result, sorted(oracle.reasons))
        assert line.verdict == ("same" if same else "changed")
        if decision.policy.result != oracle.result:
            key = (decision.policy.result, oracle.result)
            moved[key] = moved.get(key, 0) + 1
    assert {(t.before, t.after): t.count for t in report.transitions} == moved
    assert moved, "the demo's applicants include some v2 declines that v1 allowed"
    counts_by_verdict = {share.verdict: share.count for share in report.verdicts}
    assert counts_by_verdict["changed"] > 0
    assert counts_by_verdict["same"] + counts_by_verdict["changed"] == 30
    page = render_report(report)
    assert 'allow</td><td class="after">deny' in page
    assert "<script" not in page


def test_checks_are_signed_records_the_why_report_lists_and_verifies_offline(
    demo: tuple[Ledger, list[Decision]],
) -> None:
    ledger, decisions = demo
    loan = next(iter(loans(decisions).values()))
    checker = PolicyChecker(ledger)
    with ledger.engine.connect() as connection:
        [index] = checked_indexes(connection, TENANT, decision_id=loan.id, where=None, limit=None)
    pinned = checker.check_one(index)
    against = checker.check_one(index, "v2")
    assert pinned.record.verdict == "reproduced"
    assert against.record.verdict in ("same", "changed")
    assert against.receipt.index == pinned.receipt.index + 1
    report = report_for(ledger, loan.id)
    policy = report["verification"]["policy"]
    assert policy["status"] == "registered"
    assert policy["document"]["version"] == "v1"
    assert policy["document"]["digest"] == LOAN_POLICY_V1.digest
    registration = json.loads(base64.b64decode(report["evidence"]["policy"]["envelope"]))
    document = json.loads(base64.b64decode(registration["payload"]))["document"]
    assert document == LOAN_POLICY_V1.document  # the report carries the document itself
    checks = report["verification"]["policy_checks"]
    assert checks["status"] == "recorded"
    assert [c["index"] for c in checks["checks"]] == [
        pinned.receipt.index,
        against.receipt.index,
    ]
    assert [c["link"] for c in checks["checks"]] == ["valid", "valid"]
    result = verify_report(report, ledger.verifier)
    assert result, result.failure
    names = [step.name for step in result.steps]
    assert names[-3:] == ["policy", "policy checks", "replays"]
    assert result.steps[names.index("policy checks")].detail == (
        "2 policy checks of this entry verify"
    )
    assert any("policy checks: the 2 listed" in claim for claim in result.unverifiable)
    # Changing any value the report does not list as the server's word is noticed.
    for pointer in leaves(report):
        if pointer.startswith(SERVER_CLAIMS) or pointer.endswith(KEY_WINDOWS):
            continue
        assert not verify_report(mutated(report, pointer), ledger.verifier), pointer


def test_a_decision_whose_policy_is_unregistered_is_flagged_and_not_checked(
    ledger: Ledger,
) -> None:
    decisions = demo_ledger(ledger, 6)
    loan = next(iter(loans(decisions).values()))
    with ledger.engine.begin() as connection:
        connection.execute(text("DELETE FROM policies"))  # as if never registered
    report = report_for(ledger, loan.id)
    policy = report["verification"]["policy"]
    assert (policy["status"], policy["document"]) == ("unregistered", None)
    assert "cannot be shown or re-run" in policy["detail"]
    checked = verify_report(report, ledger.verifier)
    assert checked
    assert any("no registered policy has the digest" in c for c in checked.unverifiable)
    with ledger.engine.connect() as connection:
        [index] = checked_indexes(connection, TENANT, decision_id=loan.id, where=None, limit=None)
    with pytest.raises(NotFound, match="names no registered policy"):
        PolicyChecker(ledger).check_one(index)
    order = next(d for d in decisions if d.policy is None)
    with ledger.engine.connect() as connection:
        [index] = checked_indexes(connection, TENANT, decision_id=order.id, where=None, limit=None)
    with pytest.raises(BadRequest, match="records no policy"):
        PolicyChecker(ledger).check_one(index)
    assert counts(ledger.engine)[2] == 0


def test_a_tampered_policy_document_is_named_by_prov_verify_and_never_evaluated(
    ledger: Ledger, db_url: str, key_path: Path
) -> None:
    decisions = demo_ledger(ledger, 6)
    loan = next(iter(loans(decisions).values()))
    with ledger.engine.connect() as connection:
        policy_index, envelope = connection.execute(
            text("SELECT idx, envelope FROM log_entries WHERE record_id = :r"),
            {"r": "policy:lending:personal_loan@v1"},
        ).one()
    # Loosen v1's score floor inside the stored envelope, keeping it well-formed JSON.
    outer: dict[str, Any] = json.loads(bytes(envelope))
    payload = json.loads(base64.b64decode(outer["payload"]))
    payload["document"] = payload["document"].replace("< 650", "< 550")
    outer["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    disable_append_only_guards(ledger.engine)
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE log_entries SET envelope = :e WHERE idx = :i"),
            {"e": json.dumps(outer).encode(), "i": policy_index},
        )
    run = prov(["verify"], db=db_url, key=key_path)
    assert run.code == 1, run
    assert f"entry {policy_index}:" in run.err
    with ledger.engine.connect() as connection:
        [index] = checked_indexes(connection, TENANT, decision_id=loan.id, where=None, limit=None)
    with pytest.raises(PolicyEvaluationFailed, match=f"entry {policy_index}.*does not verify"):
        PolicyChecker(ledger).check_one(index)
    report = report_for(ledger, loan.id)
    failed = verify_report(report, ledger.verifier)
    assert not failed
    assert failed.failure is not None
    assert failed.failure.name == "policy"
