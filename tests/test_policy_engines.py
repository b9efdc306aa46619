"""The policy engines: the demo's Cedar policy agrees with its oracle, `loan_rules` v1 and v2,
on random applicants; inputs that do not match a policy's schema are named; the Python
engine runs only the registered, marked code."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.records.policy import PolicyOutcome, document_digest
from replay.policy.cedar import CedarPolicy
from replay.policy.check import verdict_of
from replay.policy.errors import PolicyEvaluationFailed, PolicyInputsInvalid
from replay.policy.python import PythonPolicy
from service.demo import loan_rules
from service.demo.loan_policy import (
    LOAN_POLICY_SCHEMA,
    LOAN_POLICY_V1,
    LOAN_POLICY_V2,
    loan_policy_inputs,
)

V1 = CedarPolicy(LOAN_POLICY_V1.document, LOAN_POLICY_SCHEMA)
V2 = CedarPolicy(LOAN_POLICY_V2.document, LOAN_POLICY_SCHEMA)
RULES_DIGEST = document_digest(Path(loan_rules.__file__).read_bytes())


def oracle(rule: Any, applicant: dict[str, Any]) -> PolicyOutcome:
    answer = rule(applicant)
    return PolicyOutcome(
        result="allow" if answer["approved"] else "deny", reasons=answer["reasons"]
    )


def cents(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda c: str(Decimal(c) / 100))


applicants = st.fixed_dictionaries(
    {
        "credit_score": st.integers(300, 850),
        "annual_income": cents(100, 10**10),
        "amount": cents(0, 10**10),
        "monthly_debt": cents(0, 10**9),
    }
)
# Near the thresholds, where an off-by-one shows.
edges = st.fixed_dictionaries(
    {
        "credit_score": st.sampled_from([649, 650, 651, 679, 680, 681]),
        "annual_income": st.sampled_from(["1200.00", "60000.00", "100000.00"]),
        "amount": st.sampled_from(["0", "600.00", "600.01", "30000.00", "30000.01", "50000"]),
        "monthly_debt": st.sampled_from(["0", "36.00", "43.00", "1800.00", "2150.00", "2150.05"]),
    }
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(applicants, edges))
def test_cedar_v1_and_v2_decide_as_the_rules_do(applicant: dict[str, Any]) -> None:
    inputs = loan_policy_inputs(applicant)
    before, after = (
        oracle(loan_rules.approve_loan_v1, applicant),
        oracle(loan_rules.approve_loan_v2, applicant),
    )
    cedar_before = V1.evaluate(inputs, "acme/loan-underwriter", "loan-1")
    cedar_after = V2.evaluate(inputs, "acme/loan-underwriter", "loan-1")
    assert cedar_before == before
    assert cedar_after == after
    # The diff a check against v2 reports for a decision recorded under v1.
    expected = (
        "same" if (before.result, before.reasons) == (after.result, after.reasons) else "changed"
    )
    assert verdict_of("against", cedar_before, cedar_after) == expected
    assert verdict_of("pinned", before, cedar_before) == "reproduced"


def test_reasons_come_in_document_order_from_the_forbid_annotations() -> None:
    inputs = loan_policy_inputs(
        {"credit_score": 600, "annual_income": "10000.00", "amount": "9000", "monthly_debt": "900"}
    )
    outcome = V2.evaluate(inputs, "acme/x", "loan-1")
    assert outcome == PolicyOutcome(
        result="deny",
        reasons=["credit_score_below_680", "dti_above_0.36", "amount_above_half_income"],
    )
    allowed = V2.evaluate(
        inputs | {"credit_score": 700, "debt_to_income": "0.1", "amount_cents": 1}, "a/b", "c"
    )
    assert allowed == PolicyOutcome(result="allow", reasons=[])


@pytest.mark.parametrize(
    ("change", "pointer", "says"),
    [
        ({"credit_score": None}, "/inputs/credit_score", "is missing"),
        ({"credit_score": "720"}, "/inputs/credit_score", "not an integer (Long)"),
        ({"credit_score": True}, "/inputs/credit_score", "not an integer (Long)"),
        ({"credit_score": 1 << 63}, "/inputs/credit_score", "64-bit"),
        ({"debt_to_income": "0.12345"}, "/inputs/debt_to_income", "at most 4 places"),
        ({"debt_to_income": "NaN"}, "/inputs/debt_to_income", "at most 4 places"),
        ({"debt_to_income": [1]}, "/inputs/debt_to_income", "at most 4 places"),
    ],
)
def test_inputs_that_do_not_match_the_cedar_schema_are_named(
    change: dict[str, Any], pointer: str, says: str
) -> None:
    inputs = loan_policy_inputs(
        {"credit_score": 700, "annual_income": "50000", "amount": "100", "monthly_debt": "10"}
    )
    for key, value in change.items():
        if value is None:
            del inputs[key]
        else:
            inputs[key] = value
    with pytest.raises(PolicyInputsInvalid) as raised:
        V1.evaluate(inputs, "acme/x", "loan-1")
    assert raised.value.pointer == pointer
    assert says in raised.value.detail


def test_cedar_context_types_sets_records_entities_and_common_types() -> None:
    schema = {
        "Shop": {
            "commonTypes": {
                "Profile": {
                    "type": "Record",
                    "attributes": {
                        "age": {"type": "Long"},
                        "nickname": {"type": "String", "required": False},
                    },
                }
            },
            "entityTypes": {"User": {}, "Order": {}},
            "actions": {
                "buy": {
                    "appliesTo": {
                        "principalTypes": ["User"],
                        "resourceTypes": ["Order"],
                        "context": {
                            "type": "Record",
                            "attributes": {
                                "tags": {"type": "Set", "element": {"type": "String"}},
                                "profile": {"type": "Profile"},
                                "owner": {"type": "Entity", "name": "User"},
                                "active": {"type": "Boolean"},
                                "ip": {"type": "Extension", "name": "ipaddr"},
                            },
                        },
                    }
                }
            },
        }
    }
    document = """
    @id("vip")
    permit (principal, action == Shop::Action::"buy", resource)
    when { context.tags.contains("vip") && context.profile.age >= 18 && context.active
           && context.owner == Shop::User::"alice" && context.ip.isLoopback() };
    """
    policy = CedarPolicy(document, schema)
    inputs = {
        "tags": ["vip"],
        "profile": {"age": 30, "extra": "ignored"},
        "owner": "alice",
        "active": True,
        "ip": "127.0.0.1",
        "unrelated": {"left": "out"},
    }
    assert policy.evaluate(inputs, "alice", "o-1") == PolicyOutcome(result="allow")
    assert policy.evaluate(inputs | {"tags": []}, "alice", "o-1").result == "deny"
    with pytest.raises(PolicyInputsInvalid) as raised:
        policy.evaluate(inputs | {"tags": ["vip", 3]}, "alice", "o-1")
    assert raised.value.pointer == "/inputs/tags/1"
    with pytest.raises(PolicyInputsInvalid) as raised:
        policy.evaluate(inputs | {"profile": {"nickname": "x"}}, "alice", "o-1")
    assert raised.value.pointer == "/inputs/profile/age"


def test_a_cedar_policy_that_errs_fails_rather_than_skipping_the_policy() -> None:
    inputs = loan_policy_inputs(
        {"credit_score": 700, "annual_income": "50000", "amount": "100", "monthly_debt": "10"}
    ) | {"amount_cents": (1 << 63) - 1}
    with pytest.raises(PolicyEvaluationFailed, match=r"cedar: .*overflow"):
        V2.evaluate(inputs, "acme/x", "loan-1")


def test_the_python_engine_runs_the_registered_marked_function() -> None:
    policy = PythonPolicy(
        RULES_DIGEST,
        {"type": "object", "required": ["credit_score"]},
        "service.demo.loan_rules:approve_loan_v2",
    )
    applicant = {
        "credit_score": 690,
        "annual_income": "60000",
        "amount": "40000",
        "monthly_debt": "0",
    }
    assert policy.evaluate(applicant, "a/b", "d") == PolicyOutcome(
        result="deny", reasons=["amount_above_half_income"]
    )
    with pytest.raises(PolicyInputsInvalid) as raised:
        policy.evaluate({"amount": "1"}, "a/b", "d")
    assert raised.value.pointer == "/inputs"
    assert "credit_score" in raised.value.detail
    with pytest.raises(PolicyEvaluationFailed, match="raised KeyError"):
        policy.evaluate({"credit_score": 700}, "a/b", "d")


@pytest.mark.parametrize(
    ("digest", "entry_point", "says"),
    [
        ("sha256:" + "0" * 64, "service.demo.loan_rules:approve_loan_v1", "not the registered"),
        (RULES_DIGEST, "service.demo.loan_rules:debt_to_income", "not marked"),
        (RULES_DIGEST, "service.demo.nowhere:f", "cannot import"),
    ],
)
def test_the_python_engine_refuses_other_code(digest: str, entry_point: str, says: str) -> None:
    with pytest.raises(PolicyEvaluationFailed, match=says):
        PythonPolicy(digest, None, entry_point)
