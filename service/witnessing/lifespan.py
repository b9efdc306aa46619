"""The checkpoint follower in the server's lifespan: one per server process, started when
witnesses or a publication target are configured, stopped before the ledger closes."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from ledger.publication import open_publisher
from litestar import Litestar

from query.services import read_services
from service.settings import Settings
from service.witnessing.follower import CheckpointFollower


def witnessing_lifespan(
    settings: Settings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        endpoints = settings.witness_endpoints()
        target = settings.publish_checkpoints
        if not endpoints and target is None:
            yield
            return
        follower = CheckpointFollower(
            read_services(app.state).ledger.engine,
            endpoints,
            settings.served_quorum(),
            None if target is None else open_publisher(target, settings.s3_options()),
            interval_s=settings.witness_interval_seconds,
            timeout_s=settings.witness_timeout_seconds,
        )
        stop = threading.Event()
        threads = follower.run(stop)
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                # A request in flight ends within the witness timeout.
                await anyio.to_thread.run_sync(thread.join, settings.witness_timeout_seconds + 1)

    return lifespan
