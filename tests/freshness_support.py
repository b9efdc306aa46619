"""Helpers for the freshness tests: small signed decisions that rely on context keys, and
signed context changes, for one service key registered per tenant."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from ingest.client._records import sign_record
from ledger.keys.signing import SigningKey
from ledger.records.context_change import ContextChange
from ledger.records.decision import (
    ContextSnapshot,
    Decision,
    Dependency,
    Freshness,
    Model,
    Output,
)
from tests.support import register

SERVICE = "inventory"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def key_for(tenant: str) -> SigningKey:
    """The service key of `tenant` (a key is bound to one tenant and service)."""
    return SigningKey.from_seed(hashlib.sha256(tenant.encode()).digest())


def register_tenant(engine: Engine, tenant: str) -> None:
    register(engine, key_for(tenant), tenant=tenant, service=SERVICE)


def decision(
    tenant: str,
    record_id: str,
    depends_on: Sequence[tuple[str, str]] = (),
    *,
    snapshots: Sequence[tuple[str, str, datetime | None]] = (),
    valid_until: datetime | None = None,
    declare: bool = True,
    occurred_at: datetime = T0,
    trace_id: str | None = None,
) -> bytes:
    """A signed decision relying on `depends_on` (key, version) and on context snapshots
    (name, version, valid_until); `declare=False` leaves out the freshness member."""
    freshness = (
        Freshness(
            valid_until=valid_until,
            depends_on=[Dependency(key=key, version=version) for key, version in depends_on],
        )
        if declare
        else None
    )
    made = Decision(
        id=record_id,
        tenant=tenant,
        service=SERVICE,
        decision_type="stock.reserve",
        occurred_at=occurred_at,
        inputs={"sku": "sku-1"},
        context=[
            ContextSnapshot(
                name=name,
                version=version,
                digest=DIGEST,
                fetched_at=occurred_at - timedelta(seconds=1),
                valid_until=until,
                value={"level": 3},
            )
            for name, version, until in snapshots
        ],
        model=Model(provider="openai", name="gpt-test", version="2026-01-01"),
        output=Output(decision={"reserve": True}),
        freshness=freshness,
        attributes={} if trace_id is None else {"conversation_id": trace_id},
    )
    return sign_record(made, key_for(tenant)).envelope


def change(
    tenant: str, record_id: str, key: str, version: str, *, changed_at: datetime = T0
) -> bytes:
    """A signed context change: `key` is now at `version`."""
    made = ContextChange(
        id=record_id,
        tenant=tenant,
        service=SERVICE,
        key=key,
        version=version,
        changed_at=changed_at,
        reason="restocked",
    )
    return sign_record(made, key_for(tenant)).envelope
