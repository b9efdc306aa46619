"""Two versions of a loan-approval rule, as versioned decision functions.

They are what the entry-point provider calls (``replay.examples_rules:approve_loan_v1``,
or ``...:approve_loan_{version}`` from one any-version registry route), and they show
what a replay of a rule change looks like: v2 tightened the credit-score floor and the
debt-to-income ceiling and added a cap on the amount relative to income, so some
applicants v1 approved are declined by v2. Inputs are those of `examples/loan_service.py`:
``credit_score`` (int), ``annual_income`` and ``amount`` (decimal strings or numbers)
and ``monthly_debt`` (likewise).

They are also the demo's lending policy as Python policies (``engine: python``, marked with
`policy_function`), and the oracle its Cedar rewrite (`service.demo.loan_policy`) is
tested against.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from replay.policy.python import policy_function


def _money(inputs: dict[str, Any], key: str) -> Decimal:
    # Decimal from the text, never from a float, so thresholds compare exactly.
    return Decimal(str(inputs[key]))


def debt_to_income(inputs: dict[str, Any]) -> Decimal:
    """Monthly debt over monthly income, to four places (Infinity without an income)."""
    income = _money(inputs, "annual_income")
    if income <= 0:
        return Decimal("Infinity")
    return (_money(inputs, "monthly_debt") * 12 / income).quantize(Decimal("0.0001"))


@policy_function
def approve_loan_v1(inputs: dict[str, Any]) -> dict[str, Any]:
    """v1: approve at a credit score of 650 or more and a debt-to-income ratio of 0.43 or
    less."""
    score = int(inputs["credit_score"])
    dti = debt_to_income(inputs)
    reasons = []
    if score < 650:
        reasons.append("credit_score_below_650")
    if dti > Decimal("0.43"):
        reasons.append("dti_above_0.43")
    return {
        "approved": not reasons,
        "reasons": reasons,
        "debt_to_income": str(dti),
        "rule_version": "v1",
    }


@policy_function
def approve_loan_v2(inputs: dict[str, Any]) -> dict[str, Any]:
    """v2: a score of 680 or more, a debt-to-income ratio of 0.36 or less, and an amount
    of at most half the annual income."""
    score = int(inputs["credit_score"])
    dti = debt_to_income(inputs)
    reasons = []
    if score < 680:
        reasons.append("credit_score_below_680")
    if dti > Decimal("0.36"):
        reasons.append("dti_above_0.36")
    if _money(inputs, "amount") > _money(inputs, "annual_income") / 2:
        reasons.append("amount_above_half_income")
    return {
        "approved": not reasons,
        "reasons": reasons,
        "debt_to_income": str(dti),
        "rule_version": "v2",
    }
