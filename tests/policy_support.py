"""Helpers shared by the policy tests: policy records signed by the demo policy service, and
a ledger holding the demo's registered policies and signed demo decisions."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Engine, func, select

from ledger.errors import RecordRejected
from ledger.keys.signing import sign_policy
from ledger.ledger import Ledger
from ledger.records.decision import Decision
from ledger.records.policy import PolicyRecord, document_digest
from ledger.storage.schema import log_entries, policies, policy_checks
from service.demo.loan_policy import POLICY_SERVICE, policy_records
from service.demo.scenarios import demo_decisions
from service.demo.traffic import (
    demo_envelopes,
    demo_signing_key,
    prepare_demo,
    register_demo_keys,
)

TENANT = "acme"


def policy_key_registered(engine: Engine, tenant: str = TENANT) -> None:
    register_demo_keys(engine, tenant, [POLICY_SERVICE])


def policy_record(**changes: Any) -> PolicyRecord:
    """The demo's v1 registration with `changes`; a changed document gets its own digest
    unless `digest` is among the changes."""
    base = policy_records(changes.pop("tenant", TENANT))[0]
    if "document" in changes and "digest" not in changes and changes["document"] is not None:
        changes["digest"] = document_digest(changes["document"])
    return msgspec.structs.replace(base, **changes)


def signed(record: PolicyRecord) -> bytes:
    return sign_policy(record, demo_signing_key(record.tenant, record.service))


def counts(engine: Engine) -> tuple[int, int, int]:
    """Log entries, registered policies and policy checks."""
    with engine.connect() as connection:
        return tuple(  # type: ignore[return-value]
            connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (log_entries, policies, policy_checks)
        )


def demo_ledger(ledger: Ledger, count: int, *, seed: int = 7) -> list[Decision]:
    """The demo as `prov demo` makes it: keys, principals, policies v1 and v2, and `count`
    signed decisions; the decisions appended."""
    shape = prepare_demo(ledger, TENANT)
    raws = list(demo_envelopes(count, seed=seed, tenant=TENANT, shape=shape, store_blobs=ledger))
    for start in range(0, len(raws), 500):
        results = ledger.append(raws[start : start + 500])
        assert not [r for r in results if isinstance(r, RecordRejected)], results
    return list(demo_decisions(count, seed=seed, tenant=TENANT))
