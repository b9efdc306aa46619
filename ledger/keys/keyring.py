"""The service-key registry: which Ed25519 keys may sign records for which tenant and service.

Each key has a validity window `[valid_from, valid_until)` and may be revoked. A record is
admitted only under a key that is bound to the record's tenant and service, was valid at the
record's `occurred_at`, and is not revoked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, insert, select, update

from ledger.errors import KeyConflict, KeyRegistryError
from ledger.keys.ed25519 import PUBLIC_KEY_SIZE
from ledger.log.entry import rfc3339, to_micros
from ledger.records.replay import REPLAY_SERVICE
from ledger.storage.schema import service_keys


def derive_keyid(public_key: bytes) -> str:
    """The default DSSE keyid of a service key: lowercase hex SHA-256 of the raw key."""
    return hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True, slots=True)
class ServiceKey:
    keyid: str
    tenant: str
    service: str
    public_key: bytes
    valid_from_us: int
    valid_until_us: int | None
    revoked_us: int | None

    def valid_at(self, moment_us: int) -> bool:
        if moment_us < self.valid_from_us:
            return False
        return self.valid_until_us is None or moment_us < self.valid_until_us

    def to_json(self) -> dict[str, object]:
        return {
            "keyid": self.keyid,
            "tenant": self.tenant,
            "service": self.service,
            "public_key": self.public_key.hex(),
            "valid_from": rfc3339(self.valid_from_us),
            "valid_until": None if self.valid_until_us is None else rfc3339(self.valid_until_us),
            "revoked_at": None if self.revoked_us is None else rfc3339(self.revoked_us),
        }


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
