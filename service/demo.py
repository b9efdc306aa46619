"""Signed demo traffic for `prov demo`: deterministic demo service keys and envelopes.

The demo keys are derived from public strings, so anyone can forge demo records: they
exist to show the ledger working, and are registered only by `prov demo`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from sqlalchemy import Engine

from ledger.demo import DEMO_SERVICES, demo_decisions
from ledger.keyring import register_key
from ledger.record import Decision
from ledger.signing import SigningKey, sign_decision

_DEMO_KEYS_VALID_FROM = datetime(2000, 1, 1, tzinfo=UTC)


def demo_signing_key(tenant: str, service: str) -> SigningKey:
    return SigningKey.from_seed(
        hashlib.sha256(f"prov demo key/{tenant}/{service}".encode()).digest()
    )


def register_demo_keys(engine: Engine, tenant: str) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for service in sorted(set(DEMO_SERVICES.values())):
            register_key(
                connection,
                tenant=tenant,
                service=service,
                public_key=demo_signing_key(tenant, service).public_key,
                valid_from=_DEMO_KEYS_VALID_FROM,
                now=now,
            )


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
