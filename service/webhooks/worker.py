"""The delivery worker in the server's lifespan: one thread per server process, started
once the ledger is open and stopped (after the POST under way) before it closes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from litestar import Litestar

from query.services import read_services
from service.settings import Settings
from service.webhooks.delivery import DeliveryPolicy, WebhookWorker


def webhooks_lifespan(
    settings: Settings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        worker = WebhookWorker(read_services(app.state).ledger, DeliveryPolicy.of(settings))
        worker.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(worker.stop)

    return lifespan
