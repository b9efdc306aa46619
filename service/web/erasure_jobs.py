"""The erasure job in the server's lifespan (docs/erasure.md): one task per server process.

At start-up, then every `PROV_EXPIRY_INTERVAL_SECONDS`, it completes every erasure recorded
but not done (a crash between the commit of its records and the deletion of its objects
and key), runs queued erasures the floor or a released hold now allows, and erases content
past each tenant's expiry (`Erasures.run_due`). Each step decides
under the log's lock, so several processes running the job never erase twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from litestar import Litestar

from ledger.ledger import Ledger
from ledger.log.sequencer import now_micros
from query.services import read_services
from service.settings import Settings

_log = logging.getLogger(__name__)


async def _run(ledger: Ledger, interval_s: float) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(lambda: ledger.erasures.run_due(now_micros()))
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop outlives any one failure; the next run retries
            _log.exception("the erasure job failed; retrying at its next run")
        await asyncio.sleep(interval_s)


def erasure_lifespan(
    settings: Settings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        ledger = read_services(app.state).ledger
        task = asyncio.get_running_loop().create_task(
            _run(ledger, settings.expiry_interval_seconds), name="erasure-job"
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
