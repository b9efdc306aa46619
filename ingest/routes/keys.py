"""Admin routes: the tenant's service signing keys and its API keys."""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import delete, get, post
from sqlalchemy import Engine

from ledger.errors import KeyRegistryError, NotFound
from ledger.keys.apikeys import ADMINS, ApiKey, Role, create_api_key, list_api_keys, revoke_api_key
from ledger.keys.keyring import ServiceKey, get_key, list_keys, register_key, revoke_key
from ledger.keys.signing import public_key_from_pem
from ledger.log.sequencer import now_micros
from ledger.records import dsse
from ledger.storage.db import write_transaction

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\s/]+$")]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


class KeyRegistration(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    service: Name
    # PEM (SubjectPublicKeyInfo), or the 32 raw bytes in hex or base64.
    public_key: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    valid_from: AwareTime | None = None
    valid_until: AwareTime | None = None
    keyid: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class ServiceKeyView(msgspec.Struct):
    keyid: str
    tenant: str
    service: str
    public_key: str
    valid_from: str
    valid_until: str | None
    revoked_at: str | None

    @classmethod
    def of(cls, key: ServiceKey) -> ServiceKeyView:
        return msgspec.convert(key.to_json(), cls)


class ServiceKeyList(msgspec.Struct):
    keys: list[ServiceKeyView]


class ApiKeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    role: Role
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""


class ApiKeyView(msgspec.Struct):
    id: str
    tenant: str
    role: Role
    name: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyView:
        return msgspec.convert(key.to_json(), cls)


class ApiKeyCreated(msgspec.Struct):
    id: str
    key: str  # shown this once; only its hash is stored
    tenant: str
    role: Role
    name: str
    created_at: str


class ApiKeyList(msgspec.Struct):
    api_keys: list[ApiKeyView]


def parse_public_key(text: str) -> bytes:
    """An Ed25519 public key given as PEM, or its 32 raw bytes in hex or base64."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            return public_key_from_pem(text.encode())
        if _HEX_KEY.fullmatch(text):
            return bytes.fromhex(text)
        return dsse.b64decode(text)
    except (ValueError, TypeError, binascii.Error) as error:
        raise KeyRegistryError(
            f"public_key is not an Ed25519 key in PEM, hex or base64: {error}",
            pointer="/public_key",
        ) from None


@post(
    "/", opt={"roles": ADMINS}, summary="Register a service key", tags=["keys"], sync_to_thread=True
)
def register_service_key(data: KeyRegistration, caller: ApiKey, engine: Engine) -> ServiceKeyView:
    """Register an Ed25519 key that may sign the caller's tenant's records for one service."""
    now = datetime.now(UTC)
    with write_transaction(engine) as connection:
        key = register_key(
            connection,
            tenant=caller.tenant,
            service=data.service,
            public_key=parse_public_key(data.public_key),
            valid_from=data.valid_from or now,
            valid_until=data.valid_until,
            keyid=data.keyid,
            now=now,
        )
    return ServiceKeyView.of(key)


@get("/", opt={"roles": ADMINS}, summary="List service keys", tags=["keys"], sync_to_thread=True)
def list_service_keys(caller: ApiKey, engine: Engine) -> ServiceKeyList:
    with engine.connect() as connection:
        return ServiceKeyList(
            [ServiceKeyView.of(key) for key in list_keys(connection, caller.tenant)]
        )


@delete(
    "/{keyid:str}",
    opt={"roles": ADMINS},
    summary="Revoke a service key",
    tags=["keys"],
    status_code=200,
    sync_to_thread=True,
)
def revoke_service_key(keyid: str, caller: ApiKey, engine: Engine) -> ServiceKeyView:
    """Revoke from now on: records it signs are refused; those already stored stay valid."""
    with write_transaction(engine) as connection:
        key = get_key(connection, keyid)
        if key is None or key.tenant != caller.tenant:
            raise NotFound(f"no service key {keyid!r}")
        return ServiceKeyView.of(revoke_key(connection, keyid, at=datetime.now(UTC)))


@post(
    "/", opt={"roles": ADMINS}, summary="Create an API key", tags=["api-keys"], sync_to_thread=True
)
def create_api_key_route(data: ApiKeyRequest, caller: ApiKey, engine: Engine) -> ApiKeyCreated:
    """A new API key for the caller's tenant. The secret is in this answer only."""
    with write_transaction(engine) as connection:
        key, token = create_api_key(
            connection, tenant=caller.tenant, role=data.role, name=data.name, now_us=now_micros()
        )
    view = ApiKeyView.of(key)
    return ApiKeyCreated(view.id, token, view.tenant, view.role, view.name, view.created_at)


@get("/", opt={"roles": ADMINS}, summary="List API keys", tags=["api-keys"], sync_to_thread=True)
def list_api_keys_route(caller: ApiKey, engine: Engine) -> ApiKeyList:
    with engine.connect() as connection:
        return ApiKeyList([ApiKeyView.of(key) for key in list_api_keys(connection, caller.tenant)])


@delete(
    "/{key_id:str}",
    opt={"roles": ADMINS},
    summary="Revoke an API key",
    tags=["api-keys"],
    status_code=200,
    sync_to_thread=True,
)
def revoke_api_key_route(key_id: str, caller: ApiKey, engine: Engine) -> ApiKeyView:
    with write_transaction(engine) as connection:
        return ApiKeyView.of(revoke_api_key(connection, caller.tenant, key_id, now_us=now_micros()))
