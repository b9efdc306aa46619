"""Who is calling: the bearer API key of each `/v1` request, checked against the route's roles.

Routes declare the roles they admit as `opt={"roles": …}`. The `require_api_key` guard runs
before the request body is read: it resolves the key, refuses a missing or unknown one (401)
and a role the route does not admit (403), and leaves the key in the request state, where
the `caller` dependency hands it to the route. Its tenant scopes everything the route does.
Routes without `roles` (probes, metrics, the OpenAPI pages) are open.

Lookups are cached per worker for `auth_cache_seconds`, so the hot append path costs no
query per request; a revoked key stops working within that time. Keys that exist and tokens
that do not are cached apart, each in a bounded TTL cache: a flood of random tokens only
churns the small cache of misses and never evicts a valid key.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from cachetools import TTLCache
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy import Engine

from httpapi.errors import Forbidden, Unauthenticated
from ledger.keys.apikeys import ApiKey, Role, find_api_key, token_hash
from query.services import KeyLookup, read_services

# Live keys: far more than any deployment issues, so that the least recently used of them
# is evicted only by other live keys.
HIT_LIMIT = 10_000
# Unknown, malformed and revoked tokens: a small cache, so that a client retrying a revoked
# key costs no query, while random tokens can only evict each other.
MISS_LIMIT = 1_024


class ApiKeyCache:
    def __init__(
        self,
        engine: Engine,
        ttl_s: float,
        *,
        hit_limit: int = HIT_LIMIT,
        miss_limit: int = MISS_LIMIT,
    ) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._hits: TTLCache[bytes, ApiKey] = TTLCache(hit_limit, ttl_s)
        self._misses: TTLCache[bytes, bool] = TTLCache(miss_limit, ttl_s)
        # How many lookups reached the database: for the metrics of a flood, and the tests.
        self.queries = 0

    async def lookup(self, token: str) -> ApiKey | None:
        digest = token_hash(token)
        key = self._hits.get(digest)
        if key is not None:
            return key
        if digest in self._misses:
            return None
        key = await anyio.to_thread.run_sync(self._find, token)
        if self.ttl_s > 0:
            if key is None:
                self._misses[digest] = True
            else:
                self._hits[digest] = key
        return key

    def _find(self, token: str) -> ApiKey | None:
        self.queries += 1
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
    services = read_services(connection.app.state)
    connection.state.caller = await authenticate(
        connection,
        services.api_keys,
        roles,
        public=services.public_reads and handler.opt.get("public_read", False),
    )


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any],
    keys: KeyLookup,
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
