"""Signed demo traffic for `prov demo`: deterministic demo service keys and envelopes.

The demo keys are derived from public strings, so anyone can forge demo records: they
exist to show the ledger working, and are registered only by `prov demo`.

`prepare_demo` also enrolls the humans at the roots of the demo's delegation chains as
principals of the tenant (ledger records, signed by the tenant's demo principal-service
key), registers the two versions of the demo's lending policy (`service.demo.loan_policy`,
signed by the tenant's demo policy service) so that every loan decision re-evaluates, and
gives the `shape` that adds to each decision the invocation its chain proves, so that every
demo decision verifies as authorized by a named human.

Given a ledger to store them in, `demo_envelopes` also stores the bytes of every blob the
demo records reference (rendered prompt messages, bureau reports) in the tenant's blob
store, a batch of records at a time and before the records themselves, so that a record
never points at a blob the ledger does not hold.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from sqlalchemy import Engine

from ledger.blobs.vault import BlobVault
from ledger.delegation.records import PRINCIPAL_SERVICE, sign_record
from ledger.errors import RecordRejected
from ledger.keys.keyring import register_key
from ledger.keys.signing import SigningKey, sign_context_change, sign_decision, sign_policy
from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from ledger.records.context_change import ContextChange
from ledger.records.decision import Decision
from ledger.storage.db import side_write_transaction
from service.demo.loan_policy import POLICY_SERVICE, policy_records
from service.demo.scenarios import (
    DEMO_SERVICES,
    DemoRecord,
    authorize,
    demo_principals,
    demo_records,
)

_DEMO_KEYS_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)
# Records whose blobs are stored in one transaction: one commit per batch, not per blob.
BLOB_BATCH = 500


def demo_signing_key(tenant: str, service: str) -> SigningKey:
    return SigningKey.from_seed(
        hashlib.sha256(f"prov demo key/{tenant}/{service}".encode()).digest()
    )


def register_demo_keys(
    engine: Engine, tenant: str, services: Iterable[str] = DEMO_SERVICES.values()
) -> None:
    """Register the demo keys of `services` (by default, the demo services)."""
    now = datetime.now(UTC)
    with side_write_transaction(engine) as connection:
        for service in sorted(set(services)):
            register_key(
                connection,
                tenant=tenant,
                service=service,
                public_key=demo_signing_key(tenant, service).public_key,
                valid_from=_DEMO_KEYS_VALID_FROM,
                now=now,
            )


def enroll_demo_principals(ledger: Ledger, tenant: str) -> None:
    """Register the demo key of the tenant's principal service and append the enrollments
    of the demo's humans; again, they are idempotent retries."""
    register_demo_keys(ledger.engine, tenant, [PRINCIPAL_SERVICE])
    key = demo_signing_key(tenant, PRINCIPAL_SERVICE)
    results = ledger.append([sign_record(record, key) for record in demo_principals(tenant)])
    refused = [result for result in results if isinstance(result, RecordRejected)]
    if refused:
        raise refused[0]


def register_demo_policies(ledger: Ledger, tenant: str) -> None:
    """Register the demo key of the tenant's policy service and append the demo's lending
    policy, v1 and v2; again, they are idempotent retries."""
    register_demo_keys(ledger.engine, tenant, [POLICY_SERVICE])
    key = demo_signing_key(tenant, POLICY_SERVICE)
    results = ledger.append([sign_policy(record, key) for record in policy_records(tenant)])
    refused = [result for result in results if isinstance(result, RecordRejected)]
    if refused:
        raise refused[0]


def prepare_demo(ledger: Ledger, tenant: str) -> Callable[[Decision], Decision]:
    """Register the demo keys, enroll the demo principals and register the demo policies of
    `tenant`; the `shape` for `demo_envelopes` that makes each decision carry the
    invocation its chain proves."""
    register_demo_keys(ledger.engine, tenant)
    enroll_demo_principals(ledger, tenant)
    register_demo_policies(ledger, tenant)
    return authorize


def demo_envelopes(
    count: int,
    *,
    seed: int | None,
    tenant: str,
    shape: Callable[[Decision], Decision] | None = None,
    store_blobs: Ledger | None = None,
) -> Iterator[bytes]:
    """`count` signed envelopes; a random seed unless one is given, so that two demo runs
    add new records rather than retrying the same ids. `shape` rewrites each decision
    before it is signed. With `store_blobs`, the blobs of each batch of records are stored
    in that ledger before the batch's envelopes are yielded."""
    keys: dict[str, SigningKey] = {}
    records = demo_records(count, seed=_seed(seed), tenant=tenant)
    while batch := list(itertools.islice(records, BLOB_BATCH)):
        if store_blobs is not None:
            _store_blobs(store_blobs.blobs, tenant, batch)
        for record in batch:
            decision = shape(record.decision) if shape is not None else record.decision
            key = keys.get(decision.service)
            if key is None:
                key = keys[decision.service] = demo_signing_key(tenant, decision.service)
            yield sign_decision(decision, key)


def _store_blobs(vault: BlobVault, tenant: str, records: Iterable[DemoRecord]) -> None:
    """Store the records' blobs, each sealed under its decision's subject's key; bytes
    already held are left as they are."""
    items = [
        (digest, content, record.decision.subject)
        for record in records
        for digest, content in record.blobs.items()
    ]
    vault.put_many(tenant, items, now_us=now_micros())


def _seed(seed: int | None) -> int:
    return secrets.randbits(48) if seed is None else seed


# Which demo service owns each context key the demo decisions rely on; any other key is the
# order router's.
DEMO_CONTEXT_OWNERS = {
    "carrier.cutoffs": "order.route",
    "credit.bureau_report": "loan.approve",
    "income.verification": "loan.approve",
    "merchant.retry_config": "payment.retry",
}


def demo_context_change(tenant: str, key: str, version: str, *, reason: str | None = None) -> bytes:
    """A context change of demo key `key` to `version`, signed by the demo service that owns
    the key (`DEMO_CONTEXT_OWNERS`), as that service would report it."""
    service = DEMO_SERVICES[DEMO_CONTEXT_OWNERS.get(key, "order.route")]
    change = ContextChange(
        id=f"change-{secrets.token_hex(8)}",
        tenant=tenant,
        service=service,
        key=key,
        version=version,
        changed_at=datetime.now(UTC),
        reason=reason,
    )
    return sign_context_change(change, demo_signing_key(tenant, service))
