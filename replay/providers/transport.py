"""An httpx transport that spreads requests over several small connection pools.

httpcore's connection pool does work in proportion to the requests in flight times its
connections on every request event, so at 32 calls in flight one pool spent about 5 ms of
CPU per call: more than the replay engine and the ledger together, and enough to make a
batch replay CPU-bound far above its latency floor. Over eight shards of a few connections
each, the same calls cost about 1 ms (bench/replay.py).

Each request goes to the shard with the fewest requests in flight. A shard is an ordinary
`httpx.AsyncHTTPTransport`, so timeouts, errors, keep-alive and streaming behave exactly
as they do with one pool.
"""

from __future__ import annotations

import math

import httpx

DEFAULT_SHARDS = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, shards: int = DEFAULT_SHARDS) -> None:
        if max_connections < 1 or shards < 1:
            raise ValueError("max_connections and shards must be >= 1")
        per_shard = math.ceil(max_connections / shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        # One TLS context for all: loading the CA bundle takes tens of milliseconds.
        tls = httpx.create_ssl_context()
        self._shards = [httpx.AsyncHTTPTransport(verify=tls, limits=limits) for _ in range(shards)]
        self._in_flight = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = min(range(len(self._shards)), key=self._in_flight.__getitem__)
        self._in_flight[shard] += 1
        try:
            return await self._shards[shard].handle_async_request(request)
        finally:
            self._in_flight[shard] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
