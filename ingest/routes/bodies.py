"""Request bodies read against their limits and a per-worker memory budget.

Every route that holds a request body in memory (a record, a batch, a blob on its way to
the database) takes its bytes from one `BodyBudget` first, and gives them back only when
its answer is ready: records wait in the group-commit queue inside that window, so the
budget bounds queued bytes too. A request that cannot get its share within a short wait is
refused 503 with Retry-After before any of its body is read.

A Content-Length over the route's limit is refused 413 before reading; a body without one
is counted while it streams and refused as soon as it passes the limit. Blob uploads are
spooled to a temporary file while hashed, so that only a body whose digest matches is ever
read into memory, under the budget.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any

from litestar import Request
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from httpapi.errors import BodyMemoryBusy
from ingest.routes.request_state import write_services
from ledger.errors import BadRequest

# Uploads up to this size stay in memory while spooled; larger ones go to a file.
SPOOL_IN_MEMORY_BYTES = 256 << 10
# A body announced at most this long takes no budget: it is no more than the server's own
# per-connection read buffer, and small records then never wait behind large uploads.
SMALL_BODY_BYTES = 64 << 10
# A body without Content-Length takes budget in steps of at least this, not per chunk.
GROW_STEP = 1 << 20
RETRY_AFTER_SECONDS = 1


class BodyBudget:
    """Bytes of request bodies one worker may hold at once. Waiters are served first come,
    first served, so that a large request is not starved by a stream of small ones."""

    def __init__(self, limit: int, wait_s: float, what: str = "request bodies in memory") -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.what = what
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, size: int, *, jump: bool = False) -> None:
        """Take `size` bytes, waiting at most `wait_s`; raises `BodyMemoryBusy` otherwise.
        With `jump`, bytes that fit now are taken even while larger requests wait."""
        if size > self.limit:
            raise BodyMemoryBusy(
                f"{size} bytes is more than the worker's room for {self.what}",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if (jump or not self._waiters) and self.used + size <= self.limit:
            self.used += size
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, granted))
        try:
            async with asyncio.timeout(self.wait_s):
                await granted
        except BaseException as error:
            if granted.done() and not granted.cancelled():
                self.release(size)  # granted just as the wait ended
            else:
                granted.cancel()
                self._wake()  # a smaller waiter behind this one may fit now
            if isinstance(error, TimeoutError):
                raise BodyMemoryBusy(
                    f"the worker holds as many {self.what} as it may; "
                    "nothing was read or stored, retry after Retry-After seconds",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
            raise

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            size, granted = self._waiters[0]
            if granted.done():
                self._waiters.popleft()
                continue
            if self.used + size > self.limit:
                return
            self._waiters.popleft()
            self.used += size
            granted.set_result(None)


def budget_of(request: Request[Any, Any, Any]) -> BodyBudget:
    return write_services(request.app.state).body_budget


def spool_budget_of(request: Request[Any, Any, Any]) -> BodyBudget:
    return write_services(request.app.state).spool_budget


def body_limit_of(request: Request[Any, Any, Any]) -> int:
    """The route's body limit (`request_max_body_size`, set per router from settings)."""
    limit = request.route_handler.resolve_request_max_body_size()
    assert limit is not None, "the app sets a body limit on every route"
    return limit


def announced_length(request: Request[Any, Any, Any], limit: int) -> int | None:
    """The Content-Length, refused 413 when it is over `limit` (nothing is read then)."""
    header = request.headers.get("content-length")
    if header is None:
        return None
    if not header.strip().isdigit():
        raise BadRequest(f"Content-Length must be a byte count, not {header[:40]!r}")
    size = int(header)
    if size > limit:
        raise RequestEntityTooLarge(f"the body is {size} bytes; the limit is {limit}")
    return size


async def _grow(budget: BodyBudget, held: int, size: int, limit: int) -> int:
    """Take more of `budget` for a body that outgrew what it holds, in steps of at least
    `GROW_STEP` and never past `limit`; returns what is held now."""
    grow = min(limit, max(size, held + GROW_STEP)) - held
    await budget.acquire(grow)
    return held + grow


@asynccontextmanager
async def held_body(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytearray]:
    """The request body, read within `limit` and the worker's budget; the budget stays
    taken until the block ends, which must be when the answer is ready."""
    budget = budget_of(request)
    announced = announced_length(request, limit)
    held = 0
    try:
        if announced is not None and announced > SMALL_BODY_BYTES:
            await budget.acquire(announced)
            held = announced
        body = bytearray()
        async for chunk in request.stream():
            size = len(body) + len(chunk)
            if size > limit:
                raise RequestEntityTooLarge(f"the body is over the limit of {limit} bytes")
            if size > max(held, SMALL_BODY_BYTES):  # no Content-Length, or a wrong one
                held = await _grow(budget, held, size, limit)
            body += chunk
        if len(body) > held:
            # A small body is taken once read (a client trickling it holds nothing), so
            # that it counts while it waits for its commit.
            await budget.acquire(len(body) - held, jump=True)
            held = len(body)
        yield body
    finally:
        budget.release(held)


@dataclass
class SpooledBody:
    """A body on its way to storage: where it is, its size and its SHA-256."""

    file: IO[bytes]
    size: int
    digest: str

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@asynccontextmanager
async def spooled_body(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[SpooledBody]:
    """The body streamed into a temporary file while hashed, never held whole in memory;
    the file is removed when the block ends."""
    announced = announced_length(request, limit)
    # What of it may stay in memory before the file takes over, taken from the budget.
    in_memory = min(SPOOL_IN_MEMORY_BYTES, limit if announced is None else announced)
    in_memory = 0 if in_memory <= SMALL_BODY_BYTES else in_memory
    budget = budget_of(request)
    # And the file's size, from the worker's temporary-file space for uploads.
    spool = spool_budget_of(request)
    on_disk = 0
    await budget.acquire(in_memory)
    hasher = hashlib.sha256()
    size = 0
    try:
        await spool.acquire(announced or 0)
        on_disk = announced or 0
        # Never max_size=0: that would mean no limit at all.
        spool_size = max(in_memory, SMALL_BODY_BYTES)
        with tempfile.SpooledTemporaryFile(max_size=spool_size, prefix="prov-blob-") as file:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge(f"the body is over the limit of {limit} bytes")
                if size > on_disk:  # no Content-Length, or a wrong one
                    on_disk = await _grow(spool, on_disk, size, limit)
                hasher.update(chunk)
                file.write(chunk)
            yield SpooledBody(file, size, "sha256:" + hasher.hexdigest())
    finally:
        spool.release(on_disk)
        budget.release(in_memory)
