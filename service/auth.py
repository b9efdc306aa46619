"""Who is calling: the bearer API key of each `/v1` request, checked against the route's roles.

Routes declare the roles they admit as `opt={"roles": …}`. The `require_api_key` guard runs
before the request body is read: it resolves the key, refuses a missing or unknown one (401)
and a role the route does not admit (403), and leaves the key in the request state, where
the `caller` dependency hands it to the route. Its tenant scopes everything the route does.
Routes without `roles` (probes, metrics, the OpenAPI pages) are open.

Lookups are cached per worker for `auth_cache_seconds`, so the hot append path costs no
query per request; a revoked key stops working within that time.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy import Engine

from ledger.apikeys import ApiKey, Role, find_api_key, token_hash
from ledger.errors import Forbidden, Unauthenticated

_CACHE_LIMIT = 10_000


class ApiKeyCache:
    def __init__(self, engine: Engine, ttl_s: float) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._entries: dict[bytes, tuple[ApiKey | None, float]] = {}

    async def lookup(self, token: str) -> ApiKey | None:
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await anyio.to_thread.run_sync(self._find, token)
        if len(self._entries) >= _CACHE_LIMIT:  # random tokens must not grow memory
            self._entries.clear()
        self._entries[digest] = (key, now + self.ttl_s)
        return key

    def _find(self, token: str) -> ApiKey | None:
        with self.engine.connect() as connection:
            return find_api_key(connection, token)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    # A coroutine, so that the framework runs it on the event loop: a plain function guard
    # is sent to a thread on every request, which cost a tenth of the server's CPU.
    roles = handler.opt.get("roles")
    if roles is None:
        return
    state = connection.app.state
    connection.state.caller = await authenticate(
        connection,
        state.api_keys,
        roles,
        public=state.public_reads and handler.opt.get("public_read", False),
    )


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any],
    keys: ApiKeyCache,
    roles: frozenset[Role],
    *,
    public: bool,
) -> ApiKey | None:
    """The caller's key; None only on a public-read route when reads are public."""
    if public:
        return None
    token = bearer_token(connection)
    if token is None:
        raise Unauthenticated("send an API key as `Authorization: Bearer <key>`")
    key = await keys.lookup(token)
    if key is None:
        raise Unauthenticated("the API key is unknown or revoked")
    if key.role not in roles:
        allowed = " or ".join(sorted(role.value for role in roles))
        raise Forbidden(f"the {key.role.value} role may not call this; it needs {allowed}")
    return key
