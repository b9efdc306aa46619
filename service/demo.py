"""Signed demo traffic for `prov demo`: deterministic demo service keys and envelopes.

The demo keys are derived from public strings, so anyone can forge demo records: they
exist to show the ledger working, and are registered only by `prov demo`.

`prepare_demo` also enrolls the humans at the roots of the demo's delegation chains as
principals of the tenant (ledger records, signed by the tenant's demo principal-service
key), and gives the `shape` that adds to each decision the invocation its chain proves, so
that every demo decision verifies as authorized by a named human.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from sqlalchemy import Engine

from ledger.delegation_records import PRINCIPAL_SERVICE, sign_record
from ledger.demo import DEMO_SERVICES, authorize, demo_decisions, demo_principals
from ledger.errors import RecordRejected
from ledger.keyring import register_key
from ledger.ledger import Ledger
from ledger.record import Decision
from ledger.signing import SigningKey, sign_decision

_DEMO_KEYS_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)


def demo_signing_key(tenant: str, service: str) -> SigningKey:
    return SigningKey.from_seed(
        hashlib.sha256(f"prov demo key/{tenant}/{service}".encode()).digest()
    )


def register_demo_keys(
    engine: Engine, tenant: str, services: Iterable[str] = DEMO_SERVICES.values()
) -> None:
    """Register the demo keys of `services` (by default, the demo services)."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
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


def prepare_demo(ledger: Ledger, tenant: str) -> Callable[[Decision], Decision]:
    """Register the demo keys and enroll the demo principals of `tenant`; the `shape` for
    `demo_envelopes` that makes each decision carry the invocation its chain proves."""
    register_demo_keys(ledger.engine, tenant)
    enroll_demo_principals(ledger, tenant)
    return authorize


def demo_envelopes(
    count: int,
    *,
    seed: int | None,
    tenant: str,
    shape: Callable[[Decision], Decision] | None = None,
) -> Iterator[bytes]:
    """`count` signed envelopes; a random seed unless one is given, so that two demo runs
    add new records rather than retrying the same ids. `shape` rewrites each decision
    before it is signed."""
    keys: dict[str, SigningKey] = {}
    for generated in demo_decisions(count, seed=_seed(seed), tenant=tenant):
        decision = shape(generated) if shape is not None else generated
        key = keys.get(decision.service)
        if key is None:
            key = keys[decision.service] = demo_signing_key(tenant, decision.service)
        yield sign_decision(decision, key)


def _seed(seed: int | None) -> int:
    return secrets.randbits(48) if seed is None else seed
