"""The service-key registry: which Ed25519 keys may sign records for which tenant and service.

Each key has a validity window `[valid_from, valid_until)` and may be revoked. A record is
admitted only under a key that is bound to the record's tenant and service, was valid at the
record's `occurred_at`, and is not revoked.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select, update

from ledger.errors import KeyConflict, KeyRegistryError

# derive_keyid and ServiceKey live in pure modules so clients use them without SQLAlchemy.
from ledger.keys.ed25519 import PUBLIC_KEY_SIZE, derive_keyid
from ledger.keys.service_key import ServiceKey
from ledger.log.entry import to_micros
from ledger.records.replay import RECORD_KEYID_PREFIX, REPLAY_SERVICE
from ledger.storage.schema import service_keys

__all__ = [
    "ServiceKey",
    "derive_keyid",
    "get_key",
    "list_keys",
    "load_keys",
    "register_key",
    "revoke_key",
]


def _from_row(row: object) -> ServiceKey:
    return ServiceKey(*row)  # type: ignore[misc]


_COLUMNS = (
    service_keys.c.keyid,
    service_keys.c.tenant,
    service_keys.c.service,
    service_keys.c.public_key,
    service_keys.c.valid_from_us,
    service_keys.c.valid_until_us,
    service_keys.c.revoked_us,
)


def register_key(
    connection: Connection,
    *,
    tenant: str,
    service: str,
    public_key: bytes,
    valid_from: datetime,
    valid_until: datetime | None = None,
    keyid: str | None = None,
    now: datetime,
) -> ServiceKey:
    """Register a key; registering the identical key again is a no-op that returns it."""
    if service == REPLAY_SERVICE:
        # Only the ledger's replay key signs replays; it registers itself
        # (`ledger.keys.replay_signing`), so a service key can never pass for a replay.
        raise KeyRegistryError(
            f"the service {REPLAY_SERVICE!r} is reserved for the ledger's replay key",
            pointer="/service",
        )
    if keyid is not None and keyid.startswith(RECORD_KEYID_PREFIX):
        # The prefix names the ledger's record key, so that offline readers can tell a
        # ledger-attested record from a producer-signed one by its keyid alone.
        raise KeyRegistryError(
            f"keyids starting with {RECORD_KEYID_PREFIX!r} are reserved for the ledger's "
            "record key",
            pointer="/keyid",
        )
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise KeyRegistryError("an Ed25519 public key is 32 bytes", pointer="/public_key")
    if valid_until is not None and valid_until <= valid_from:
        raise KeyRegistryError("valid_until must be after valid_from", pointer="/valid_until")
    wanted = ServiceKey(
        keyid or derive_keyid(public_key),
        tenant,
        service,
        public_key,
        to_micros(valid_from),
        None if valid_until is None else to_micros(valid_until),
        None,
    )
    existing = get_key(connection, wanted.keyid)
    if existing is not None:
        if (existing.tenant, existing.service, existing.public_key) != (
            tenant,
            service,
            public_key,
        ) or (existing.valid_from_us, existing.valid_until_us) != (
            wanted.valid_from_us,
            wanted.valid_until_us,
        ):
            raise KeyConflict(f"keyid {wanted.keyid} is already registered differently")
        return existing
    connection.execute(
        insert(service_keys).values(
            keyid=wanted.keyid,
            tenant=tenant,
            service=service,
            public_key=public_key,
            valid_from_us=wanted.valid_from_us,
            valid_until_us=wanted.valid_until_us,
            created_us=to_micros(now),
        )
    )
    return wanted


def revoke_key(connection: Connection, keyid: str, *, at: datetime) -> ServiceKey:
    key = get_key(connection, keyid)
    if key is None:
        raise KeyRegistryError(f"no key with keyid {keyid}")
    if key.revoked_us is None:
        connection.execute(
            update(service_keys)
            .where(service_keys.c.keyid == keyid)
            .values(revoked_us=to_micros(at))
        )
    return get_key(connection, keyid) or key


def get_key(connection: Connection, keyid: str) -> ServiceKey | None:
    row = connection.execute(select(*_COLUMNS).where(service_keys.c.keyid == keyid)).first()
    return None if row is None else _from_row(row)


def list_keys(connection: Connection, tenant: str | None = None) -> list[ServiceKey]:
    query = select(*_COLUMNS).order_by(service_keys.c.tenant, service_keys.c.keyid)
    if tenant is not None:
        query = query.where(service_keys.c.tenant == tenant)
    return [_from_row(row) for row in connection.execute(query)]


def load_keys(engine: Engine, keyids: Iterable[str]) -> dict[str, ServiceKey]:
    """Fetch the registry entries for a batch's keyids in one query."""
    wanted = sorted(set(keyids))
    if not wanted:
        return {}
    with engine.connect() as connection:
        rows = connection.execute(select(*_COLUMNS).where(service_keys.c.keyid.in_(wanted)))
        return {row.keyid: _from_row(row) for row in rows}
