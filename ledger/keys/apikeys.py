"""API keys: bearer credentials with one role and one tenant, stored only as hashes.

A token reads `prov_<id>_<secret>`. The id is public (it names the key in listings and
revocations); the whole token's SHA-256 is what the database keeps, so a copy of the
database does not let anyone call the service.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from ledger.errors import NotFound
from ledger.log.entry import rfc3339
from ledger.storage.schema import api_keys

TOKEN_PREFIX = "prov_"  # noqa: S105 - a marker, not a secret


class Role(enum.StrEnum):
    INGEST = "ingest"
    AUDIT = "audit"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    role: Role
    name: str
    created_us: int
    revoked_us: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "role": self.role.value,
            "name": self.name,
            "created_at": rfc3339(self.created_us),
            "revoked_at": None if self.revoked_us is None else rfc3339(self.revoked_us),
        }


KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.tenant,
    api_keys.c.role,
    api_keys.c.name,
    api_keys.c.created_us,
    api_keys.c.revoked_us,
)


def key_from_row(row: Row[*tuple[Any, ...]]) -> ApiKey:
    return ApiKey(row.id, row.tenant, Role(row.role), row.name, row.created_us, row.revoked_us)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_api_key(
    connection: Connection, *, tenant: str, role: Role, name: str, now_us: int
) -> tuple[ApiKey, str]:
    """A new key and its token; the token is returned once and never stored."""
    key_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    connection.execute(
        insert(api_keys).values(
            id=key_id,
            key_hash=token_hash(token),
            tenant=tenant,
            role=role.value,
            name=name,
            created_us=now_us,
        )
    )
    return ApiKey(key_id, tenant, role, name, now_us, None), token


def find_api_key(connection: Connection, token: str) -> ApiKey | None:
    """The live key this token belongs to, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = connection.execute(
        select(*KEY_COLUMNS).where(
            api_keys.c.key_hash == token_hash(token), api_keys.c.revoked_us.is_(None)
        )
    ).first()
    return None if row is None else key_from_row(row)


def list_api_keys(connection: Connection, tenant: str) -> list[ApiKey]:
    rows = connection.execute(
        select(*KEY_COLUMNS).where(api_keys.c.tenant == tenant).order_by(api_keys.c.created_us)
    )
    return [key_from_row(row) for row in rows]


def revoke_api_key(connection: Connection, tenant: str, key_id: str, *, now_us: int) -> ApiKey:
    row = connection.execute(
        select(*KEY_COLUMNS).where(api_keys.c.id == key_id, api_keys.c.tenant == tenant)
    ).first()
    if row is None:
        raise NotFound(f"no API key {key_id!r}")
    # The key's auditor-page sessions end with it (they also stop resolving through it).
    from ledger.keys.ui_sessions import end_for_key  # noqa: PLC0415 - it imports this module

    end_for_key(connection, key_id)
    key = key_from_row(row)
    if key.revoked_us is not None:
        return key
    connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_us=now_us))
    return ApiKey(key.id, key.tenant, key.role, key.name, key.created_us, now_us)


# Which roles may call a route; admin may do what any other role may.
WRITERS = frozenset({Role.INGEST, Role.ADMIN})
READERS = frozenset({Role.AUDIT, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
ANY_ROLE = frozenset(Role)
