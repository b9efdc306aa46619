"""The demo's lending policy, ``lending/personal_loan``, written in Cedar, in two versions.

v1 and v2 are the rules of `service.demo.loan_rules` (which stays their oracle) as Cedar
policies over one schema (`policies/`): a ``permit`` and one ``forbid`` per reason to deny,
whose ``@id`` is the reason. Cedar compares but does not divide, so the service derives
the figures the policy reads: the debt-to-income ratio to four places (as the rules
compute it) and money in cents, so that "an amount above half the income" is the exact
integer comparison ``amount_cents * 2 > annual_income_cents``.

`loan_policy_inputs` is that derivation: an applicant's figures, plus the features. The
loan scenario records them as its policy-check step's inputs, and the decision's
`policy` names v1 by the digest of its document, with the result and reasons the rule
gives, which are Cedar's (tests check every one). `policy_records` are the two
registrations `prov demo` appends, signed by the tenant's demo policy service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from ledger.records.policy import PolicyRecord, document_digest, policy_record_id
from service.demo.loan_rules import approve_loan_v1, debt_to_income

LOAN_POLICY_ID: Final = "lending/personal_loan"
# The service that owns and registers the demo's policies.
POLICY_SERVICE: Final = "risk-policy"
_FILES = Path(__file__).with_name("policies")
LOAN_POLICY_SCHEMA: Final[dict[str, Any]] = json.loads(
    (_FILES / "personal_loan.cedarschema.json").read_text(encoding="utf-8")
)


@dataclass(frozen=True, slots=True)
class DemoPolicy:
    """One version of the demo's lending policy: its Cedar document and when it took effect."""

    version: str
    document: str
    registered_at: datetime

    @property
    def digest(self) -> str:
        return document_digest(self.document)


def _version(version: str, registered_at: datetime) -> DemoPolicy:
    document = (_FILES / f"personal_loan_{version}.cedar").read_text(encoding="utf-8")
    return DemoPolicy(version, document, registered_at)


LOAN_POLICY_V1: Final = _version("v1", datetime(2025, 5, 1, tzinfo=UTC))
LOAN_POLICY_V2: Final = _version("v2", datetime(2025, 9, 1, tzinfo=UTC))
LOAN_POLICIES: Final = (LOAN_POLICY_V1, LOAN_POLICY_V2)


def _cents(amount: str) -> int:
    cents = Decimal(amount) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(cents)


def loan_policy_inputs(applicant: dict[str, Any]) -> dict[str, Any]:
    """The applicant's figures (``credit_score``; ``annual_income``, ``amount`` and
    ``monthly_debt`` as decimal strings, income above zero) and the features the Cedar
    policy reads from them."""
    return applicant | {
        "debt_to_income": str(debt_to_income(applicant)),
        "amount_cents": _cents(applicant["amount"]),
        "annual_income_cents": _cents(applicant["annual_income"]),
    }


def assess_policy_v1(inputs: dict[str, Any]) -> tuple[str, list[str]]:
    """The result and reasons v1 gives on `inputs`: ``allow``, or ``deny`` and why."""
    rule = approve_loan_v1(inputs)
    return ("allow" if rule["approved"] else "deny"), list(rule["reasons"])


def policy_records(tenant: str) -> list[PolicyRecord]:
    """The registrations of v1 and v2 in `tenant`, the same bytes every time, so that
    `prov demo` run again appends nothing new."""
    return [
        PolicyRecord(
            id=policy_record_id(LOAN_POLICY_ID, policy.version),
            tenant=tenant,
            service=POLICY_SERVICE,
            registered_at=policy.registered_at,
            engine="cedar",
            policy_id=LOAN_POLICY_ID,
            version=policy.version,
            document=policy.document,
            digest=policy.digest,
            schema=LOAN_POLICY_SCHEMA,
            description="Personal loans: credit score and debt-to-income floors"
            + (", and an amount cap relative to income" if policy.version == "v2" else ""),
        )
        for policy in LOAN_POLICIES
    ]
